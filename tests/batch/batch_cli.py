"""Helpers for the batch tests: run the real command, cut real music, make tiny models."""

from __future__ import annotations

from pathlib import Path

import carried
import numpy as np
from cli_run import stemsplit  # noqa: F401 - the tests' one command runner

RATE = 44100
SECONDS = 1.0


def music(seconds: float = SECONDS, offset: int = 0) -> np.ndarray:
    """`(frames, 2)` float32 real music (the carried MUSDB clip) from frame `offset`."""
    return carried.music(int(seconds * RATE) + 37, offset)  # odd: stems must match exactly


def write_audio(path: Path, audio: np.ndarray, subtype: str = "PCM_16") -> Path:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, RATE, subtype=subtype)
    return path


def tiny_demucs_checkpoint(path: Path, seed: int = 0) -> Path:
    """A tiny HDemucs saved by demucs' own serialize_model + torch.save (fp16 state).

    Depth 4 (the hybrid branches need it), 4 channels, segment 2 s: one chunk per track.
    Skips the test when the `demucs` package is absent.
    """
    import pytest

    pytest.importorskip("demucs")
    import torch
    import zoo_checkpoints as zc
    from demucs.hdemucs import HDemucs

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = HDemucs(sources=zc.SOURCES, channels=4, depth=4, nfft=1024, dconv_comp=2,
                    segment=2)
    return zc.save_bytes(path, zc.demucs_package_bytes(model))


def read(path: Path) -> np.ndarray:
    """A file's samples as `(frames, channels)` float32, decoded by libsndfile."""
    import soundfile

    return soundfile.read(str(path), dtype="float32", always_2d=True)[0]
