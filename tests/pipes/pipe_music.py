"""Real music for the pipe tests, cut from the MUSDB sample in ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

RATE = 44100


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
