"""Spectral ensembles (UVR's "Max Spec" / "Min Spec", and a complex average), streamed.

Every model's stem goes through the same STFT: n_fft 2048, hop 512, periodic Hann
analysis and synthesis windows, frames centred on multiples of the hop (the signal
is treated as zero outside the track, like `torch.stft(center=True)` with zero
padding). Per time-frequency bin the complex values are combined:

- `avg-spec`: the weighted mean of the complex values;
- `max-spec` / `min-spec`: the complex value of largest / smallest magnitude.

The inverse is a weighted overlap-add divided by the summed squared windows
(constant 1.5 inside the track at this hop), so identical inputs come back
unchanged and the output has exactly the input's length. Frames are processed as
soon as their samples have arrived, so memory stays at a few frames per model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from stemsplit.options import SPECTRAL_ALGORITHMS

N_FFT = 2048
HOP = 512


def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float64)


def combine_spectra(spectra: np.ndarray, weights: Sequence[float], algorithm: str) -> np.ndarray:
    """spectra: [models, ..., bins] complex -> [..., bins]."""
    if algorithm == "avg-spec":
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum()
        return np.tensordot(w, spectra, axes=1)
    magnitude = np.abs(spectra)
    pick = np.argmax if algorithm == "max-spec" else np.argmin
    index = pick(magnitude, axis=0)
    return np.take_along_axis(spectra, index[None], axis=0)[0]


class SpectralCombiner:
    """Streams [models, ..., n] blocks in, combined [..., n] blocks out."""

    def __init__(self, algorithm: str, weights: Sequence[float]) -> None:
        if algorithm not in SPECTRAL_ALGORITHMS:
            raise ValueError(algorithm)
        self.algorithm = algorithm
        self.weights = list(weights)
        self.window = _window()
        self.pending: np.ndarray | None = None  # input samples from `start` on
        self.start = -N_FFT // 2  # signal position of pending[..., 0] (zeros before 0)
        # Output sums from `released` on, and their summed squared windows; shaped
        # by the first block (`_ensure`).
        self.out: np.ndarray = np.zeros(0, dtype=np.float64)
        self.norm: np.ndarray = np.zeros(0, dtype=np.float64)
        self.released = 0
        self.next_frame = 0  # index of the next frame to compute (centre = index * HOP)
        self.total = 0

    def _ensure(self, block: np.ndarray) -> np.ndarray:
        """The pending input, allocated (with the output sums) at the first block."""
        if self.pending is None:
            shape = block.shape[:-1]
            self.pending = np.zeros((*shape, N_FFT // 2), dtype=np.float64)
            self.out = np.zeros((*shape[1:], 0), dtype=np.float64)
            self.norm = np.zeros(0, dtype=np.float64)
        return self.pending

    def _frame(self, frames: np.ndarray) -> None:
        """Analyse, combine and overlap-add frames starting at self.next_frame."""
        spectra = np.fft.rfft(frames * self.window, axis=-1)  # [models, ..., F, bins]
        combined = combine_spectra(spectra, self.weights, self.algorithm)
        synth = np.fft.irfft(combined, n=N_FFT, axis=-1) * self.window  # [..., F, N_FFT]
        count = frames.shape[-2]
        first = self.next_frame * HOP - N_FFT // 2
        end = first + (count - 1) * HOP + N_FFT
        need = end - self.released
        if need > self.out.shape[-1]:
            grow = need - self.out.shape[-1]
            self.out = np.concatenate([self.out, np.zeros((*self.out.shape[:-1], grow))], -1)
            self.norm = np.concatenate([self.norm, np.zeros(grow)])
        for f in range(count):
            lo = first + f * HOP - self.released
            s_lo = max(0, -lo)
            self.out[..., lo + s_lo : lo + N_FFT] += synth[..., f, s_lo:]
            self.norm[lo + s_lo : lo + N_FFT] += self.window[s_lo:] ** 2
        self.next_frame += count

    def _process(self, final: bool) -> np.ndarray:
        """Compute every frame whose samples are all in; release finished output."""
        pending = self.pending
        assert pending is not None  # push() allocated it
        available_end = self.start + pending.shape[-1]
        # Last frame: the last centre whose window still overlaps the track.
        last_centre = (self.total + N_FFT // 2 - 1) // HOP * HOP
        if final:
            pad = last_centre + N_FFT // 2 - available_end
            if pad > 0:
                zeros = np.zeros((*pending.shape[:-1], pad))
                pending = np.concatenate([pending, zeros], axis=-1)
        frames: list[np.ndarray] = []
        while True:
            centre = (self.next_frame + len(frames)) * HOP
            if final and centre > last_centre:
                break
            lo = centre - N_FFT // 2 - self.start
            if lo + N_FFT > pending.shape[-1]:
                break
            frames.append(pending[..., lo : lo + N_FFT])
        if frames:
            self._frame(np.stack(frames, axis=-2))
        # Input before the next frame's first sample is no longer needed.
        drop = self.next_frame * HOP - N_FFT // 2 - self.start
        if drop > 0:
            pending = pending[..., drop:]
            self.start += drop
        self.pending = pending
        # Output before the next frame's first sample is final.
        ready = self.total if final else min(self.next_frame * HOP - N_FFT // 2, self.total)
        count = ready - self.released
        if count <= 0:
            return np.zeros((*self.out.shape[:-1], 0), dtype=np.float32)
        block = self.out[..., :count] / np.maximum(self.norm[:count], 1e-10)
        self.out = self.out[..., count:]
        self.norm = self.norm[count:]
        self.released = ready
        return block.astype(np.float32)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add [models, ..., n] samples; return whatever output is final."""
        pending = self._ensure(block)
        self.pending = np.concatenate([pending, block.astype(np.float64)], axis=-1)
        self.total += block.shape[-1]
        return self._process(final=False)

    def finish(self) -> np.ndarray:
        """Flush the remaining output (the track ended)."""
        if self.pending is None:
            return np.zeros((0,), dtype=np.float32)
        return self._process(final=True)


def spectral_stream(
    blocks: Iterable[np.ndarray], algorithm: str, weights: Sequence[float]
) -> Iterator[np.ndarray]:
    """Combine a stream of [models, ..., n] blocks spectrally."""
    combiner = SpectralCombiner(algorithm, weights)
    for block in blocks:
        out = combiner.push(block)
        if out.shape[-1]:
            yield out
    tail = combiner.finish()
    if tail.ndim and tail.shape[-1]:
        yield tail
