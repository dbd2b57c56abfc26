"""Shared by the UVR tests: run the CLI on a frozen audio-separator fixture, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
from e2e_cli import stemsplit
from parity import snr_db

DATA = Path(__file__).resolve().parents[1] / "data" / "uvr"
MIXTURE = DATA / "mixture.flac"
MIN_SNR_DB = 50.0


def run_cli(model: Path, out: Path, *extra: str | Path) -> dict[str, Path]:
    result = stemsplit(MIXTURE, "--checkpoint", model, "-o", out, "--bit-depth", "float32",
                       "--json", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    return {stem: Path(path) for stem, path in track["stems"].items()}


def compare(folder: Path, written: dict[str, Path]) -> dict[str, float]:
    """SNR of each written stem against audio-separator's (over audio-separator's length:
    its VR output is shorter than the input by the STFT's remainder; ours is exact)."""
    meta = json.loads((folder / "fixture.json").read_text())
    frames = soundfile.info(str(MIXTURE)).frames
    figures = {}
    assert set(written) == set(meta["stems"])
    for stem in meta["stems"]:
        expected = soundfile.read(str(folder / f"{stem}.flac"), dtype="float32", always_2d=True)[0]
        actual = soundfile.read(str(written[stem]), dtype="float32", always_2d=True)[0]
        assert actual.shape == (frames, 2), stem
        assert np.abs(expected).max() > 1e-3, stem
        figures[stem] = snr_db(expected, actual[: expected.shape[0]])
    return figures
