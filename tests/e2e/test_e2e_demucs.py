"""Demucs checkpoints through the CLI, checked against `demucs.apply.apply_model`.

- Legacy `.th` packages written by demucs' own `serialize_model` + `torch.save` (fp16
  state, as the published files are), as a zoo bag (card + HTTP mirror) and as a bag
  yaml beside its members (the layout of demucs' `remote/htdemucs_ft.yaml`), separated
  in a subprocess where `import demucs` fails: stemsplit must not need the package.
- The released htdemucs hyperparameters (random weights) on 30 s of real music.

The reference is demucs' separate flow: the track normalised by its mono mix's mean
and std, `apply_model(shifts=0, overlap=0.25)`, then de-normalised.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from carried import music
from e2e_cli import stemsplit
from parity import snr_db

pytest.importorskip("demucs")
import torch
import zoo_checkpoints as zc

# Bag weights per member and source (drums, bass, other, vocals), normalised per source
# by demucs' BagOfModels: drums from member 0, bass from 1, other and vocals averaged.
BAG_WEIGHTS = [[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.5, 1.0]]
TINY_HT = {"channels": 4, "depth": 4, "nfft": 1024, "t_layers": 1, "t_heads": 2,
           "bottom_channels": 0, "dconv_comp": 2, "segment": 2}  # fmt: skip

BLOCKER = '''\
"""Installed through PYTHONPATH: `import demucs` fails in this interpreter."""
import os
import sys


def _log(line):
    with open(os.environ["E2E_DEMUCS_LOG"], "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


class _BlockDemucs:
    def find_spec(self, name, path=None, target=None):
        if name == "demucs" or name.startswith("demucs."):
            _log("attempt " + name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _BlockDemucs())
_log("installed")
'''


def _demucs_separate(model, mix: np.ndarray) -> np.ndarray:
    """demucs' separate flow on `(channels, n)` float32: normalise, apply_model, undo."""
    from demucs.apply import apply_model

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (see e2e_cli.stemsplit)
    try:
        wav = torch.from_numpy(mix)
        ref = wav.mean(0)
        wav = (wav - ref.mean()) / ref.std()
        with torch.no_grad():
            out = apply_model(model, wav[None], shifts=0, split=True, overlap=0.25)[0]
        return (out * ref.std() + ref.mean()).numpy()
    finally:
        torch.set_num_threads(previous)


def _load_reference(payload: bytes):
    """demucs' own loader on the exact bytes stemsplit reads (fp16 weights included)."""
    from demucs.states import load_model

    return load_model(torch.load(io.BytesIO(payload), weights_only=False)).eval()


def _written(result) -> dict[str, Path]:
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    return {stem: Path(path) for stem, path in track["stems"].items()}


def _read(path: Path) -> np.ndarray:
    info = soundfile.info(str(path))
    assert info.subtype == "FLOAT", info
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0].T


@pytest.fixture
def blocked_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess in which `demucs` cannot be imported (checked here)."""
    folder = tmp_path / "block-demucs"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    log = tmp_path / "demucs-imports.log"
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "E2E_DEMUCS_LOG": str(log)}
    probe = subprocess.run([sys.executable, "-c", "import demucs.states"], capture_output=True,
                           text=True, env={**os.environ, **env}, timeout=60)  # fmt: skip
    assert probe.returncode != 0 and "blocked" in probe.stderr, probe.stderr
    log.unlink()
    return env


def test_legacy_th_bag_via_zoo_and_yaml_without_demucs(inputs, blocked_env, server,
                                                       tmp_path):  # fmt: skip
    from demucs.apply import BagOfModels
    from demucs.htdemucs import HTDemucs

    members = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        payload = zc.demucs_package_bytes(HTDemucs(sources=zc.SOURCES, **TINY_HT))
        signature = f"{seed:08x}"
        members.append((f"{signature}-{zc.sha256(payload)[:8]}.th", signature, payload))

    # The zoo: cards (STEMSPLIT_ZOO) name upstream URLs; the files come from the mirror.
    files = []
    for name, _, payload in members:
        server.add(name, payload)
        files.append({"url": f"https://dl.fbaipublicfiles.com/demucs/e2e/{name}",
                      "sha256_prefix": zc.sha256(payload)[:8]})  # fmt: skip
    cards = zc.write_zoo(tmp_path / "zoo.toml", {"tiny-ft": {
        "architecture": "demucs", "sources": zc.SOURCES, "samplerate": 44100,
        "bag": {"weights": BAG_WEIGHTS}, "files": files}})  # fmt: skip
    zoo_env = {**blocked_env, "STEMSPLIT_ZOO": str(cards), "STEMSPLIT_MIRROR": server.base_url,
               "STEMSPLIT_MODEL_DIR": str(tmp_path / "cache")}  # fmt: skip
    # A bag yaml beside its members, as demucs' remote/htdemucs_ft.yaml.
    bag_dir = tmp_path / "bag"
    bag_dir.mkdir()
    for name, _, payload in members:
        (bag_dir / name).write_bytes(payload)
    signatures = ", ".join(f"'{signature}'" for _, signature, _ in members)
    (bag_dir / "tiny_ft.yaml").write_text(
        f"models: [{signatures}]\nweights: [\n"
        + "".join(f"  [{', '.join(map(str, row))}],\n" for row in BAG_WEIGHTS) + "]\n"
    )

    source = inputs["stereo"]
    common = ("--bit-depth", "float32", "--shifts", "0", "--json")
    outputs = {
        "zoo": _written(stemsplit(source, "-m", "tiny-ft", "-o", tmp_path / "a", *common,
                                  env=zoo_env)),
        "yaml": _written(stemsplit(source, "--checkpoint", bag_dir / "tiny_ft.yaml",
                                   "-o", tmp_path / "b", *common, env=blocked_env)),
    }  # fmt: skip
    log = (tmp_path / "demucs-imports.log").read_text().splitlines()
    assert log == ["installed", "installed"]  # the blocker ran, and nothing asked for demucs
    assert [len(server.requests_for(name)) for name, _, _ in members] == [1, 1]

    bag = BagOfModels([_load_reference(p) for _, _, p in members], weights=BAG_WEIGHTS)
    mix = soundfile.read(str(source), dtype="float32", always_2d=True)[0].T
    expected = _demucs_separate(bag, mix)
    for how, written in outputs.items():
        assert list(written) == zc.SOURCES, how
        for index, stem in enumerate(zc.SOURCES):
            actual = _read(written[stem])
            assert actual.shape == expected[index].shape
            error = float(np.abs(actual - expected[index]).max())
            assert error <= 1e-4, f"{how} {stem}: max abs error {error:.3g}"


@pytest.mark.slow  # 42 M parameters over 30 s of audio, twice (stemsplit and demucs)
def test_released_htdemucs_cli_matches_demucs_apply_model(musdb, tmp_path):
    from demucs.htdemucs import HTDemucs
    from test_demucs_parity import HTDEMUCS  # the released hyperparameters

    torch.manual_seed(0)
    payload = zc.demucs_package_bytes(HTDemucs(**HTDEMUCS))
    checkpoint = zc.save_bytes(tmp_path / "955717e8-random.th", payload)
    # The carried clip is 3 s: loop it to 30 s, so several 7.8 s segments overlap.
    rate = soundfile.info(str(musdb / "mixture.flac")).samplerate
    clip = music(30 * rate)
    source = tmp_path / "mixture30.flac"
    soundfile.write(str(source), clip, rate, subtype="PCM_24")

    written = _written(stemsplit(source, "--checkpoint", checkpoint, "--shifts", "0",
                                 "--bit-depth", "float32", "-o", tmp_path, "--json",
                                 timeout=1200))  # fmt: skip
    mix = soundfile.read(str(source), dtype="float32", always_2d=True)[0].T
    expected = _demucs_separate(_load_reference(payload), mix)
    for index, stem in enumerate(HTDEMUCS["sources"]):
        actual = _read(written[stem])
        assert actual.shape == expected[index].shape == (2, 30 * rate)
        snr = snr_db(expected[index], actual)
        print(f"{stem}: {snr:.1f} dB")
        assert snr >= 60, f"{stem}: {snr:.1f} dB"
