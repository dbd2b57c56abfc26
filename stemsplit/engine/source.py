"""Random access to a track at a model's sample rate, without holding it in memory.

The engine reads each chunk with the audio around it (Demucs' context padding) or
reflected at the track's ends (MSST), so it needs random access; decoders only
stream. A first streaming pass decodes and resamples the input once into a float32
spool file beside the output (and gathers the mono mix's mean and std for Demucs'
normalisation); chunks are then read back from it with plain file reads, which keeps
the resident memory independent of the track's length.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np


class TrackSource:
    """A `(channels, length)` float32 signal readable by sample range.

    Reads outside `[0, length)` return zeros. `mean`/`std` describe the mono mix
    (Demucs normalises the track by them: see `NormalizedSource`).
    """

    def __init__(self, channels: int, length: int, samplerate: int) -> None:
        self.channels = channels
        self.length = length
        self.samplerate = samplerate
        self.mean = 0.0  # of the mono mix, for Demucs' track normalisation
        self.std = 1.0

    def _read_raw(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop), zero outside the track, normalised."""
        out = np.zeros((self.channels, max(0, stop - start)), dtype=np.float32)
        lo, hi = max(start, 0), min(stop, self.length)
        if hi > lo:
            out[:, lo - start : hi - start] = self._read_raw(lo, hi)
        return out

    def read_reflect_padded(self, start: int, stop: int, border: int) -> np.ndarray:
        """Samples [start, stop) of the track reflect-padded by `border` on each side.

        Coordinates are those of the padded signal (length + 2 * border), as MSST's
        `F.pad(mix, (border, border), mode="reflect")`; reads past it return zeros.
        """
        if border == 0:
            return self.read(start, stop)
        positions = np.arange(start, stop) - border
        inside = (positions >= -border) & (positions < self.length + border)
        mirrored = np.where(positions < 0, -positions, positions)
        mirrored = np.where(mirrored >= self.length, 2 * (self.length - 1) - mirrored, mirrored)
        if not inside.any():
            return np.zeros((self.channels, stop - start), dtype=np.float32)
        lo, hi = int(mirrored[inside].min()), int(mirrored[inside].max()) + 1
        window = self.read(lo, hi)
        out = np.zeros((self.channels, stop - start), dtype=np.float32)
        out[:, inside] = window[:, mirrored[inside] - lo]
        return out

    def close(self) -> None:
        """Release the backing storage."""


class ArraySource(TrackSource):
    """A source over an in-memory array (API calls with tensors, and tests)."""

    def __init__(self, audio: np.ndarray, samplerate: int) -> None:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        super().__init__(audio.shape[0], audio.shape[1], samplerate)
        self._audio = audio
        mono = audio.mean(axis=0, dtype=np.float64) if audio.shape[1] else np.zeros(1)
        self.mean = float(mono.mean())
        self.std = float(mono.std(ddof=1)) if audio.shape[1] > 1 else 0.0

    def _read_raw(self, start: int, stop: int) -> np.ndarray:
        return self._audio[:, start:stop]


class SpoolSource(TrackSource):
    """A source spooled to a raw float32 file (frames interleaved) in `folder`."""

    def __init__(self, blocks: Iterable[np.ndarray], samplerate: int, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".stemsplit-spool-", suffix=".f32", dir=folder)
        self.path = Path(name)
        total = 0
        channels = 2
        acc_sum = 0.0
        acc_sq = 0.0
        try:
            with os.fdopen(handle, "wb") as file:
                for block in blocks:
                    channels = block.shape[0]
                    mono = block.mean(axis=0, dtype=np.float64)
                    acc_sum += float(mono.sum())
                    acc_sq += float(np.dot(mono, mono))
                    file.write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())
                    total += block.shape[1]
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        super().__init__(channels, total, samplerate)
        if total:
            self.mean = acc_sum / total
            variance = (acc_sq - total * self.mean**2) / max(total - 1, 1)
            self.std = float(np.sqrt(max(variance, 0.0)))
        self._file = open(self.path, "rb")  # closed in close()

    def _read_raw(self, start: int, stop: int) -> np.ndarray:
        frame_bytes = 4 * self.channels
        self._file.seek(start * frame_bytes)
        data = self._file.read((stop - start) * frame_bytes)
        frames = np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels)
        return frames.T

    def close(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


class NormalizedSource(TrackSource):
    """Demucs' separator input: the track minus the mono mix's mean, over its std.

    A view: the underlying source is untouched (other models of an ensemble read it
    raw). Padding stays zero *after* normalising, as demucs pads the normalised track.
    """

    def __init__(self, inner: TrackSource) -> None:
        super().__init__(inner.channels, inner.length, inner.samplerate)
        self.inner = inner
        self.mean = inner.mean
        # Silence has std 0: leave it unscaled rather than dividing by zero (no NaN).
        self.std = inner.std if inner.std > 1e-8 else 1.0

    def read(self, start: int, stop: int) -> np.ndarray:
        out = self.inner.read(start, stop)
        lo, hi = max(start, 0) - start, min(stop, self.length) - start
        if hi > lo:
            out[:, lo:hi] = (out[:, lo:hi] - np.float32(self.mean)) / np.float32(self.std)
        return out

    def denormalize(self, block: np.ndarray) -> np.ndarray:
        """Undo the normalisation on separated stems."""
        return block * np.float32(self.std) + np.float32(self.mean)
