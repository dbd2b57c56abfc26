"""Helpers for the batch tests: run the real command, make real (or synthetic) music."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_run import stemsplit  # noqa: F401 - the tests' one command runner

RATE = 44100
SECONDS = 1.0
MUSDB_MIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "musdb-sample" \
    / "mixture.flac"


def music(seconds: float = SECONDS, offset: int = 0) -> np.ndarray:
    """`(frames, 2)` float32: the MUSDB sample's mix when ../shared has it, else tones + noise."""
    frames = int(seconds * RATE) + 37  # an odd length: stems must match it exactly
    if MUSDB_MIXTURE.is_file():
        import soundfile

        mix, rate = soundfile.read(MUSDB_MIXTURE, dtype="float32", frames=frames + offset)
        assert rate == RATE
        return np.ascontiguousarray(mix[offset:])
    rng = np.random.default_rng(offset)
    t = np.arange(frames) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 3300 * t)
    noise = 0.05 * rng.standard_normal((frames, 2))
    return (tone[:, None] + noise).astype(np.float32)


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
