"""Small combinators over streams of audio blocks (arrays whose last axis is time).

A stream is an iterator of blocks that, concatenated along the last axis, form one
signal. Shifts, bags, ensembles and writers consume several streams in lockstep;
these helpers line them up without ever concatenating a whole track.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class _Buffer:
    """Pending samples of one stream."""

    def __init__(self, stream: Iterable[np.ndarray]) -> None:
        self.stream = iter(stream)
        self.parts: list[np.ndarray] = []
        self.size = 0
        self.done = False

    def fill(self, want: int) -> None:
        while self.size < want and not self.done:
            try:
                block = next(self.stream)
            except StopIteration:
                self.done = True
                return
            if block.shape[-1]:
                self.parts.append(block)
                self.size += block.shape[-1]

    def take(self, count: int) -> np.ndarray:
        joined = self.parts[0] if len(self.parts) == 1 else np.concatenate(self.parts, axis=-1)
        head, tail = joined[..., :count], joined[..., count:]
        self.parts = [tail] if tail.shape[-1] else []
        self.size -= count
        return head


def align(streams: Sequence[Iterable[np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """Yield lists of equal-length blocks, one per stream, until every stream ends.

    All streams must have the same total length; a mismatch raises ValueError (a
    bug upstream, not a user error).
    """
    buffers = [_Buffer(s) for s in streams]
    while True:
        for buffer in buffers:
            buffer.fill(1)
        ready = [b.size for b in buffers]
        if all(b.done and b.size == 0 for b in buffers):
            return
        count = min(ready)
        if count == 0:
            raise ValueError(f"streams of different lengths (pending {ready})")
        yield [b.take(count) for b in buffers]


def skip(stream: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """Drop the first `count` samples of a stream."""
    for block in stream:
        if count >= block.shape[-1]:
            count -= block.shape[-1]
            continue
        yield block[..., count:] if count else block
        count = 0


def fit_length(stream: Iterable[np.ndarray], length: int) -> Iterator[np.ndarray]:
    """Crop or zero-pad a stream to exactly `length` samples."""
    emitted = 0
    shape = None
    for block in stream:
        shape = block.shape[:-1]
        block = block[..., : max(0, length - emitted)]
        emitted += block.shape[-1]
        if block.shape[-1]:
            yield block
    if emitted < length and shape is not None:
        yield np.zeros((*shape, length - emitted), dtype=np.float32)


def rechunk(stream: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Re-cut a stream into blocks of `size` samples (the last may be shorter)."""
    buffer = _Buffer(stream)
    while True:
        buffer.fill(size)
        if buffer.size == 0:
            return
        yield buffer.take(min(size, buffer.size))
