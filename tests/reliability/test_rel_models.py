"""Bad models through `stemsplit separate`: names, checkpoints, configs, downloads.

The cases are independent, so the fixture runs them all at once (each is a fresh
interpreter that spends most of its time importing torch) and each test checks one.
Downloads go to a live local server (tests/zoo_server.py) through STEMSPLIT_MIRROR.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import soundfile as sf
import torch
import zoo_checkpoints as zc
from rel_cli import assert_one_line_failure, leftovers, noise, stemsplit
from zoo_server import ZooServer

MARKER = "stemsplit-pwned"


class _RunsCode:
    """A pickle payload whose loading would run a shell command."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def _files(folder: Path, tiny_model: Path) -> dict[str, Path]:
    marker = folder / MARKER
    mel = zc.roformer_model(zc.TINY_MEL_YAML)
    files = {
        "song": folder / "song.wav",
        "tasnet": zc.save_bytes(folder / "tasnet.th", zc.state_dict_bytes(zc.tasnet_model())),
        "mel": zc.save_bytes(folder / "mel.ckpt", zc.msst_ckpt_bytes(mel)),
        "garbage": zc.save_bytes(folder / "garbage.th", bytes(range(256)) * 20),
        "truncated": zc.save_bytes(folder / "cut.th", tiny_model.read_bytes()[:50_000]),
        "evil_zip": folder / "evil.th",
        "evil_pickle": zc.save_bytes(folder / "evil.pkl", pickle.dumps(_RunsCode(marker))),
        "mel_yaml": folder / "mel.yaml",
        "wide_yaml": folder / "wide.yaml",
        "broken_yaml": folder / "broken.yaml",
        "evil_yaml": folder / "evil.yaml",
    }
    sf.write(files["song"], noise(1.0), 44100)
    torch.save({"state": _RunsCode(marker)}, files["evil_zip"])
    files["mel_yaml"].write_text(zc.TINY_MEL_YAML)
    files["wide_yaml"].write_text(zc.TINY_MEL_YAML.replace("dim: 16", "dim: 32"))
    files["broken_yaml"].write_text("audio: [unclosed\n")
    files["evil_yaml"].write_text(
        zc.TINY_MEL_YAML + f"evil: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    return files


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """{case: CompletedProcess} for every case, plus the folders used."""
    folder = tmp_path_factory.mktemp("models")
    f = _files(folder, tiny_model)
    out, cache = folder / "out", folder / "cache"
    payload = (folder / "tasnet.th").read_bytes()
    with ZooServer() as server:
        card = {"architecture": "conv_tasnet", "sources": zc.SOURCES, "samplerate": 44100}
        cards = {}
        for name in ("ok", "missing", "broken", "hangs", "corrupt"):
            cards[name] = {**card, "files": [{"url": f"https://example.invalid/{name}.th",
                                              "sha256": zc.sha256(payload)}]}  # fmt: skip
        zoo = zc.write_zoo(folder / "zoo.toml", cards)
        server.add("broken.th", payload)
        server.behave("broken.th", status=500, status_times=100)
        server.add("hangs.th", payload)
        server.behave("hangs.th", hang_seconds=30, hang_times=100)
        server.add("corrupt.th", payload[::-1])
        env = {"STEMSPLIT_ZOO": str(zoo), "STEMSPLIT_MIRROR": server.base_url,
               "STEMSPLIT_MODEL_DIR": str(cache), "STEMSPLIT_TIMEOUT": "0.5"}  # fmt: skip
        no_network = {**env, "STEMSPLIT_MIRROR": "http://127.0.0.1:9"}  # discard: refused
        offline = {**env, "STEMSPLIT_OFFLINE": "1"}
        cases = {
            "unknown_name": (["-m", "htdemucs_fx"], env),
            "other_architecture": (["--checkpoint", f["tasnet"], "--config", f["mel_yaml"]], env),
            "wrong_config": (["--checkpoint", f["mel"], "--config", f["wide_yaml"]], env),
            "broken_config": (["--checkpoint", f["mel"], "--config", f["broken_yaml"]], env),
            "no_config": (["--checkpoint", f["mel"]], env),
            "truncated": (["--checkpoint", f["truncated"]], env),
            "garbage": (["--checkpoint", f["garbage"]], env),
            "folder": (["--checkpoint", folder], env),
            "pickle_code_zip": (["--checkpoint", f["evil_zip"]], env),
            "pickle_code_raw": (["--checkpoint", f["evil_pickle"]], env),
            "yaml_object": (["--checkpoint", f["mel"], "--config", f["evil_yaml"]], env),
            "checksum": (["-m", "corrupt"], env),
            "offline": (["-m", "ok"], offline),
            "no_network": (["-m", "ok"], no_network),
            "http_404": (["-m", "missing"], env),
            "http_500": (["-m", "broken"], env),
            "hangs": (["-m", "hangs"], env),
        }

        def run(case: str):
            args, case_env = cases[case]
            return stemsplit(f["song"], *args, "-o", out / case, "-q", env=case_env, timeout=120)

        with ThreadPoolExecutor(max_workers=6) as pool:
            results = dict(zip(cases, pool.map(run, cases)))
    return results, folder, cache


EXPECTED = {  # case -> (exit code, words the one stderr line must contain)
    "unknown_name": (2, ["unknown model 'htdemucs_fx'", "did you mean htdemucs_ft"]),
    "other_architecture": (1, ["tasnet.th", "Conv-TasNet state_dict", "MSST yaml"]),
    "wrong_config": (1, ["mel.ckpt", "the weights do not fit", "size mismatch"]),
    "broken_config": (1, ["broken.yaml", "invalid YAML config", "line 2"]),
    "no_config": (1, ["cannot tell the architecture", "--config"]),
    "truncated": (1, ["cut.th", "truncated or corrupt checkpoint"]),
    "garbage": (1, ["garbage.th", "not a readable checkpoint"]),
    "folder": (1, ["is a folder, not a file"]),
    "pickle_code_zip": (1, ["evil.th", "refused", "system", "trusted"]),
    "pickle_code_raw": (1, ["evil.pkl", "refused", "system", "trusted"]),
    "yaml_object": (1, ["evil.yaml", "refuses a YAML tag", "python/object/apply"]),
    "checksum": (1, ["corrupt.th", "is corrupt", "nothing was cached"]),
    "offline": (1, ["offline mode is on", "ok.th"]),
    "no_network": (1, ["cannot download ok.th", "check the network"]),
    "http_404": (1, ["cannot download missing.th", "HTTP 404"]),
    "http_500": (1, ["cannot download broken.th", "HTTP 500"]),
    "hangs": (1, ["cannot download hangs.th", "timed out"]),
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_model_is_one_line_with_its_exit_code(runs, case: str) -> None:
    results, _, _ = runs
    code, words = EXPECTED[case]
    assert_one_line_failure(results[case], code, *words)


def test_nothing_ran_and_nothing_half_cached(runs) -> None:
    """No payload ran (its marker file is absent); the cache holds no bad or partial file."""
    _, folder, cache = runs
    assert not (folder / MARKER).exists()
    cached = sorted(p.name for p in cache.iterdir()) if cache.exists() else []
    assert not [name for name in cached if name.endswith(".th")], cached
    assert not leftovers(folder)
