"""Shared by the UVR tests: run the CLI on a frozen audio-separator fixture, compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
from e2e_cli import stemsplit
from parity import snr_db

DATA = Path(__file__).resolve().parents[1] / "data" / "uvr"
MIXTURE = DATA / "mixture.flac"
MIN_SNR_DB = 50.0
TOOLS = Path(__file__).resolve().parents[2] / "tools"


def fixture_meta(folder: Path) -> dict:
    return json.loads((folder / "fixture.json").read_text())


def fixture_mixture(folder: Path) -> Path:
    return DATA / fixture_meta(folder).get("mixture", "mixture.flac")


def vr_model(folder: Path, tmp_path: Path) -> Path:
    """The fixture's VR `.pth`, rebuilt from its seed by the tool that made the fixture."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    from make_uvr_fixtures import vr_weights

    path = tmp_path / f"{folder.name}.pth"
    torch.save(vr_weights(folder.name), str(path))
    return path


def run_cli(model: Path, out: Path, *extra: str | Path, mixture: Path = MIXTURE) -> dict[str, Path]:
    result = stemsplit(mixture, "--checkpoint", model, "-o", out, "--bit-depth", "float32",
                       "--json", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    return {stem: Path(path) for stem, path in track["stems"].items()}


def expected_stem(folder: Path, stem: str) -> np.ndarray:
    """audio-separator's stem [T, C] (stored at a peak of 1, scaled back by its gain)."""
    audio = soundfile.read(str(folder / f"{stem}.flac"), dtype="float32", always_2d=True)[0]
    return audio * np.float32(fixture_meta(folder)["gains"][stem])


def compare(folder: Path, written: dict[str, Path]) -> dict[str, float]:
    """SNR of each written stem against audio-separator's (over the shorter of the two:
    its VR output is shorter than the input by the STFT's remainder; ours is exact)."""
    meta = fixture_meta(folder)
    frames = soundfile.info(str(fixture_mixture(folder))).frames
    figures = {}
    assert set(written) == set(meta["stems"])
    for stem in meta["stems"]:
        expected = expected_stem(folder, stem)
        actual = soundfile.read(str(written[stem]), dtype="float32", always_2d=True)[0]
        assert actual.shape == (frames, 2), stem
        assert np.abs(expected).max() > 1e-3, stem
        n = min(frames, expected.shape[0])
        figures[stem] = snr_db(expected[:n], actual[:n])
    return figures
