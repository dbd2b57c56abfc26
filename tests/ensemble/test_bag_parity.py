"""Bags and presets through the real zoo path, against the `demucs` package.

Tiny random-weight HTDemucs members are published on a local HTTP server with model
cards (STEMSPLIT_ZOO); the reference is demucs' own `BagOfModels` + `apply_model`
with the separator's track normalisation. Forward calls of the loaded networks are
counted with a global forward hook, to show which members really run.
"""

from __future__ import annotations

import io
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import zoo_checkpoints as zc
from typer.testing import CliRunner
from zoo_server import ZooServer

pytest.importorskip("demucs")
from demucs.apply import BagOfModels, apply_model
from demucs.htdemucs import HTDemucs
from demucs.states import load_model

SOURCES = ["drums", "bass", "other", "vocals"]
TINY = {"channels": 2, "depth": 4, "nfft": 1024, "t_layers": 1, "t_heads": 2,
        "bottom_channels": 0, "dconv_comp": 2}  # fmt: skip
SEGMENT = 0.5  # seconds: the bag's segment, applied to every member as demucs does
# htdemucs_ft-like: one specialist per source, with a little help on drums and other
FT_WEIGHTS = [[1.0, 0.0, 0.2, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
              [0.3, 0.0, 0.0, 1.0]]  # fmt: skip
ONE_HOT = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
UPSTREAM = "https://dl.fbaipublicfiles.com/demucs/tiny"


def _package(seed: int) -> bytes:
    """The bytes demucs' own serialize_model + torch.save write (fp16 state)."""
    torch.manual_seed(seed)
    return zc.demucs_package_bytes(HTDemucs(sources=SOURCES, **TINY))


def _reference_model(payload: bytes):
    return load_model(torch.load(io.BytesIO(payload), weights_only=False)).eval()


def _fingerprint(model) -> float:
    return round(float(model.state_dict()["encoder.0.conv.weight"].double().sum()), 4)


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    return {f"m{seed}.th": _package(seed) for seed in range(5)}


@pytest.fixture
def zoo(payloads, tmp_path: Path, monkeypatch):
    """Cards `tiny_ft` (4 members), `tiny_one` (1 member) and preset `tiny-best`."""
    import hashlib

    def spec(name: str) -> str:
        prefix = hashlib.sha256(payloads[name]).hexdigest()[:8]
        return f'[[{{card}}.files]]\nurl = "{UPSTREAM}/{name}"\nsha256_prefix = "{prefix}"\n'

    head = 'architecture = "demucs"\nsources = {s}\nsamplerate = 44100\n'.format(
        s=str(SOURCES).replace("'", '"')
    )
    text = (
        f"[tiny_ft]\n{head}bag = {{ segment = {SEGMENT}, weights = {FT_WEIGHTS} }}\n"
        + "".join(spec(f"m{i}.th").format(card="tiny_ft") for i in range(4))
        + f"\n[tiny_one]\n{head}bag = {{ segment = {SEGMENT} }}\n"
        + spec("m4.th").format(card="tiny_one")
        + '\n[tiny-best]\nmodels = ["tiny_ft", "tiny_one"]\nensemble = "avg"\n'
        + 'weights = { tiny_ft = { vocals = 3.0 }, tiny_one = 1.0 }\n'
    )
    cards = tmp_path / "zoo.toml"
    cards.write_text(text)
    for name in ("STEMSPLIT_OFFLINE",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STEMSPLIT_ZOO", str(cards))
    monkeypatch.setenv("STEMSPLIT_MODEL_DIR", str(tmp_path / "cache"))
    with ZooServer() as server:
        for name, payload in payloads.items():
            server.add(name, payload)
        monkeypatch.setenv("STEMSPLIT_MIRROR", server.base_url)
        yield server


@pytest.fixture
def song(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal((int(1.1 * 44100), 2)) * 0.1).astype(np.float32)  # 3 chunks
    path = tmp_path / "song.wav"
    sf.write(path, audio, 44100, subtype="FLOAT")
    return path, audio


@pytest.fixture
def forward_calls():
    """Counts forward calls of whole HTDemucs networks, by weight fingerprint."""
    calls: Counter = Counter()

    def hook(module, args, output):
        if type(module).__name__ == "HTDemucs":
            calls[_fingerprint(module)] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


def _demucs_bag(payloads, names, weights, audio: np.ndarray) -> np.ndarray:
    """demucs: normalise by the mono mix, BagOfModels + apply_model, denormalise."""
    models = [_reference_model(payloads[n]) for n in names]
    bag = BagOfModels(models, weights=weights, segment=SEGMENT)
    wav = torch.from_numpy(audio.T.copy())
    ref = wav.mean(0)
    normalised = (wav - ref.mean()) / ref.std()
    with torch.no_grad():
        out = apply_model(bag, normalised[None], shifts=0, split=True, overlap=0.25,
                          progress=False)[0]  # fmt: skip
    return (out * ref.std() + ref.mean()).numpy()


def _cli(*args: str) -> None:
    from stemsplit.cli import _register, _with_default_command, app

    _register()
    on_term = signal.getsignal(signal.SIGTERM)  # the command installs its own handler
    try:
        result = CliRunner().invoke(app, _with_default_command(list(args)),
                                    catch_exceptions=False)  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, on_term)
    assert result.exit_code == 0, result.output


def _read(folder: Path, stem: str) -> np.ndarray:
    data, _ = sf.read(folder / f"{stem}.wav", dtype="float32")
    return data.T


@pytest.mark.slow  # 24 forward passes (ours and demucs'): ~15 s idle, ~55 s on a busy 2-core box
def test_bag_matches_demucs_bag_of_models(zoo, payloads, song, tmp_path, forward_calls):
    path, audio = song
    _cli(str(path), "-m", "tiny_ft", "-o", str(tmp_path / "out"), "--bit-depth", "float32",
         "--clip", "none", "-q")  # fmt: skip
    members = [_fingerprint(_reference_model(payloads[f"m{i}.th"])) for i in range(4)]
    assert all(forward_calls[m] > 0 for m in members)  # every member ran (for its own stems)
    expected = _demucs_bag(payloads, [f"m{i}.th" for i in range(4)], FT_WEIGHTS, audio)
    folder = tmp_path / "out" / "tiny_ft" / "song"
    for index, stem in enumerate(SOURCES):
        got = _read(folder, stem)
        assert got.shape == expected[index].shape
        np.testing.assert_allclose(got, expected[index], rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    "option",
    [["-s", "vocals"], pytest.param(["--two-stems", "vocals"], marks=pytest.mark.slow)],
)
def test_vocals_of_a_one_hot_bag_runs_only_the_specialist(
    zoo, payloads, song, tmp_path, forward_calls, monkeypatch, option
):
    cards = tmp_path / "zoo.toml"  # htdemucs_ft's own weights: exactly one-hot
    cards.write_text(cards.read_text().replace(str(FT_WEIGHTS), str(ONE_HOT)))
    path, audio = song
    _cli(str(path), "-m", "tiny_ft", *option, "-o", str(tmp_path / "out"),
         "--bit-depth", "float32", "--clip", "none", "-q")  # fmt: skip
    members = [_fingerprint(_reference_model(payloads[f"m{i}.th"])) for i in range(4)]
    assert [forward_calls[m] for m in members] == [0, 0, 0, 3]  # 3 chunks, specialist only
    assert [len(zoo.requests_for(f"m{i}.th")) for i in range(4)] == [0, 0, 0, 1]
    vocals = _read(tmp_path / "out" / "tiny_ft" / "song", "vocals")
    expected = _demucs_bag(payloads, ["m3.th"], None, audio)[3]
    np.testing.assert_allclose(vocals, expected, rtol=0, atol=2e-5)


@pytest.mark.slow  # two models and their demucs references
def test_preset_expands_to_its_models_weights_and_algorithm(
    zoo, payloads, song, tmp_path, forward_calls
):
    path, audio = song
    _cli(str(path), "-m", "tiny-best", "--two-stems", "vocals", "-o", str(tmp_path / "out"),
         "--bit-depth", "float32", "--clip", "none", "-q")  # fmt: skip
    fingerprints = [_fingerprint(_reference_model(payloads[f"m{i}.th"])) for i in range(5)]
    ran = [forward_calls[f] for f in fingerprints]  # before the references run
    folder = tmp_path / "out" / "tiny-best" / "song"
    assert sorted(p.name for p in folder.glob("*.wav")) == ["no_vocals.wav", "vocals.wav"]
    ft = _demucs_bag(payloads, [f"m{i}.th" for i in range(4)], FT_WEIGHTS, audio)[3]
    one = _demucs_bag(payloads, ["m4.th"], None, audio)[3]
    np.testing.assert_allclose(_read(folder, "vocals"), (3 * ft + one) / 4, rtol=0, atol=3e-5)
    mix = audio.T
    np.testing.assert_allclose(_read(folder, "no_vocals"), mix - (3 * ft + one) / 4, atol=3e-5)
    # only member 3 has weight on vocals; members 0-2 are neither downloaded nor run
    assert ran[0] == ran[1] == ran[2] == 0 and ran[3] > 0 and ran[4] > 0
