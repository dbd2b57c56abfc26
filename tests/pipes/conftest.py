"""Pipe tests: the real command fed through stdin, real music, tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from batch_cli import tiny_demucs_checkpoint

RATE = 44100


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demucs_checkpoint(tmp_path_factory.mktemp("pipe-model") / "tiny.th")


@pytest.fixture(scope="session")
def roformer(shared_dir: Path) -> tuple[Path, Path]:
    folder = shared_dir / "fixtures" / "bs_roformer"
    if not (folder / "model.ckpt").is_file():
        pytest.skip(f"needs the bs_roformer fixture in {folder}")
    return folder / "model.ckpt", folder / "config.yaml"


def real_music(shared_dir: Path, seconds: float, offset: float = 0.0) -> np.ndarray:
    """`(frames, 2)` float32 cut from the MUSDB sample (an odd length)."""
    import soundfile

    path = shared_dir / "data" / "musdb-sample" / "mixture.flac"
    if not path.is_file():
        pytest.skip(f"needs the MUSDB sample in {path.parent}")
    start = int(offset * RATE)
    mix, rate = soundfile.read(path, dtype="float32", start=start,
                               frames=int(seconds * RATE) + 37)  # fmt: skip
    assert rate == RATE
    return np.ascontiguousarray(mix)


@pytest.fixture(scope="session")
def music(shared_dir: Path) -> np.ndarray:
    return real_music(shared_dir, 6.0, offset=3.0)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    error = float(np.sum((estimate.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(error, 1e-30))
