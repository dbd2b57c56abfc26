"""Real music for the pipe tests: the carried MUSDB clip (tests/fixtures/music)."""

from __future__ import annotations

import numpy as np
from carried import music

RATE = 44100


def real_music(seconds: float, offset: float = 0.0) -> np.ndarray:
    """`(frames, 2)` float32 of the clip from `offset`, looped past its 3 s (an odd length)."""
    return music(int(seconds * RATE) + 37, int(offset * RATE))
