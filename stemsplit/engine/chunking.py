"""Plan chunks over a track, make their windows, and overlap-add their outputs.

Two reference algorithms are reproduced exactly, chosen by the model's recipe:

- Demucs' `apply_model` (demucs/apply.py): offsets `range(0, length, stride)` with
  `stride = int((1 - overlap) * segment)`; each chunk is padded to the model's valid
  length *with the real audio around it* (zeros past the track's ends, as
  `TensorChunk.padded`), the output centre-trimmed back; a triangle window "with
  maximal weight in the middle", normalised by its max; sum of weighted outputs
  divided by the sum of weights.
- MSST's `demix` (utils/model_utils.py): the track is reflect-padded by
  `border = segment - step` on both ends when it is longer than `2 * border`; chunks
  start every `step = segment // num_overlap`; a chunk shorter than the segment is
  reflect-padded when longer than half a segment, else zero-padded; linear fades of
  `segment // 10` except at the first chunk's start and the last chunk's end; divide by
  the summed windows, crop the border. MSST picks one window per *batch*, from its last
  chunk (`batch_windows`): no fade-in when that is the track's first chunk (so only in
  a batch of one; a lone chunk that is also the last keeps its fade-out, an `elif`),
  else no fade-out when it is the last chunk, for every chunk of that batch. So the
  output depends on the batch size (36 dB apart between 1 and 4 on BS-RoFormer's 8 s
  chunks): the config's `inference.batch_size` is part of the recipe.
- MSST's `demix` in its 'demucs' mode (HTDemucs trained by MSST; recipe padding
  "zeros", window "uniform"): chunks start every `step = segment // num_overlap`
  from 0, each is a whole segment read from its start with zeros past the track's
  end, no border; every chunk weighs 1 (sum of outputs / number of chunks).

Everything here is numpy and pure: the engine reads, runs and writes around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stemsplit.models.base import Recipe


@dataclass(frozen=True)
class Chunk:
    """One model call's worth of track.

    `start`/`length`: the samples this chunk contributes to, in the coordinates of the
    (possibly border-padded) signal the plan was made over. `read_start`/`read_stop`:
    the window of that signal fed to the model (reads outside the signal are padding).
    `trim`: offset of the contributing samples inside the model's output.
    """

    index: int
    start: int
    length: int
    read_start: int
    read_stop: int
    trim: int
    first: bool
    last: bool


@dataclass(frozen=True)
class Plan:
    """All chunks over a signal of `padded_length` samples, plus how to crop it."""

    chunks: tuple[Chunk, ...]
    padded_length: int
    border: int  # samples of reflect padding on each side (MSST), 0 for Demucs
    segment: int
    window: str
    # How chunks are read: "context" = the window [read_start, read_stop) of the
    # track, zeros outside it (recipes "context" and "zeros"); "reflect-border" =
    # MSST's reflect-padded track, the last short chunk reflect- or zero-padded.
    padding: str


def stride_for(recipe: Recipe, segment: int) -> int:
    """Distance between chunk starts, as each reference computes it."""
    if recipe.window == "triangle":
        return max(1, int((1 - recipe.overlap) * segment))
    # MSST: step = chunk_size // num_overlap with num_overlap = 1 / (1 - overlap).
    num_overlap = max(1, round(1 / (1 - recipe.overlap))) if recipe.overlap < 1 else 1
    return max(1, segment // num_overlap)


def plan_chunks(length: int, recipe: Recipe, segment: int,
                valid_length: Callable[[int], int] | None = None) -> Plan:  # fmt: skip
    """Plan the chunks of a `length`-sample track under `recipe`.

    `valid_length(n)` gives the model's input length for `n` samples (Demucs pads
    each chunk to it with surrounding audio); identity when None.
    """
    if length <= 0:
        raise ValueError("cannot plan chunks over an empty track")
    stride = stride_for(recipe, segment)
    if recipe.padding == "context":
        chunks = []
        offsets = range(0, length, stride)
        for index, offset in enumerate(offsets):
            chunk_length = min(segment, length - offset)
            target = valid_length(chunk_length) if valid_length else chunk_length
            delta = target - chunk_length
            read_start = offset - delta // 2
            chunks.append(
                Chunk(
                    index=index,
                    start=offset,
                    length=chunk_length,
                    read_start=read_start,
                    read_stop=read_start + target,
                    trim=delta // 2,
                    first=index == 0,
                    last=index == len(offsets) - 1,
                )
            )
        return Plan(tuple(chunks), length, 0, segment, recipe.window, recipe.padding)

    if recipe.padding == "zeros":
        return _plan_zeros(length, recipe, segment, stride)

    border = segment - stride
    if not (length > 2 * border and border > 0):
        border = 0
    padded_length = length + 2 * border
    segments = _whole_segments(range(0, padded_length, stride), padded_length, segment)
    return Plan(segments, padded_length, border, segment, recipe.window, recipe.padding)


def _plan_zeros(length: int, recipe: Recipe, segment: int, stride: int) -> Plan:
    """MSST's 'demucs' mode: whole segments from each start, zeros past the end.

    Read like "context" chunks (the window of the track, zeros outside), never
    centred: the model always sees `segment` samples starting at the chunk.
    """
    chunks = _whole_segments(range(0, length, stride), length, segment)
    return Plan(chunks, length, 0, segment, recipe.window, "context")


def _whole_segments(starts: range, total: int, segment: int) -> tuple[Chunk, ...]:
    """A chunk of `segment` samples read from each start (MSST: no centring, no trim);
    its real length stops at `total`."""
    return tuple(
        Chunk(
            index=index,
            start=start,
            length=min(segment, total - start),
            read_start=start,
            read_stop=start + segment,
            trim=0,
            first=index == 0,
            last=index == len(starts) - 1,
        )
        for index, start in enumerate(starts)
    )


def triangle_window(segment: int) -> np.ndarray:
    """Demucs' weight: 1..n/2 then down to 1, divided by its max (transition power 1)."""
    half = segment // 2
    weight = np.concatenate(
        [np.arange(1, half + 1), np.arange(segment - half, 0, -1)]
    ).astype(np.float32)
    return weight / weight.max()


def fade_window(segment: int, first: bool, last: bool) -> np.ndarray:
    """MSST's window: linear fade in/out of segment // 10, dropped at the track's ends."""
    fade = segment // 10
    window = np.ones(segment, dtype=np.float32)
    if fade > 0:
        # torch.linspace(0, 1, fade) and (1, 0, fade) as MSST builds them (for fade 1
        # they are [0] and [1], not mirror images).
        if not last:
            window[-fade:] = np.linspace(1.0, 0.0, fade, dtype=np.float32)
        if not first:
            window[:fade] = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    return window


def per_batch_windows(plan: Plan) -> bool:
    """Whether a chunk's window depends on the batch it runs in (MSST's generic demix):
    then batches must be formed as MSST forms them, `batch_size` chunks from the start."""
    return plan.window == "fade"


def batch_windows(plan: Plan, batch: Sequence[Chunk]) -> list[np.ndarray]:
    """The weights of each chunk of one model call, in order.

    Demucs' and MSST's 'demucs'-mode weights are per chunk. MSST's generic demix builds
    one window for the whole batch from its last chunk: without fade-in if that is the
    track's first chunk, else without fade-out if it is the last one.
    """
    if per_batch_windows(plan):
        decider = batch[-1]
        window = fade_window(plan.segment, decider.first, decider.last and not decider.first)
        return [window[: chunk.length] for chunk in batch]
    if plan.window == "triangle":
        triangle = triangle_window(plan.segment)
        return [triangle[: chunk.length] for chunk in batch]
    return [np.ones(chunk.length, dtype=np.float32) for chunk in batch]


class OverlapAdd:
    """Accumulates weighted chunk outputs; releases samples no later chunk can touch.

    Chunks must arrive in plan order (increasing `start`). Memory holds only the
    span from the last released sample to the furthest chunk end: about one segment
    plus a batch of strides, whatever the track's length.
    """

    def __init__(self, num_stems: int, channels: int, total: int) -> None:
        self.num_stems = num_stems
        self.channels = channels
        self.total = total
        self.released = 0  # samples before this have been returned
        self._sums = np.zeros((num_stems, channels, 0), dtype=np.float32)
        self._weights = np.zeros(0, dtype=np.float32)

    def _grow(self, end: int) -> None:
        have = self.released + self._weights.shape[0]
        if end > have:
            extra = end - have
            self._sums = np.concatenate(
                [self._sums, np.zeros((self.num_stems, self.channels, extra), np.float32)], axis=-1
            )
            self._weights = np.concatenate([self._weights, np.zeros(extra, np.float32)])

    def add(self, start: int, output: np.ndarray, window: np.ndarray) -> None:
        """Add `output * window` (output: [stems, channels, n]) at `start`."""
        if start < self.released:
            raise ValueError("chunk starts before already released samples")
        n = output.shape[-1]
        self._grow(start + n)
        lo = start - self.released
        self._sums[..., lo : lo + n] += output * window
        self._weights[lo : lo + n] += window

    def release(self, upto: int) -> np.ndarray:
        """Return the finished samples [released, upto) as sums / weights."""
        upto = min(upto, self.total)
        count = upto - self.released
        if count <= 0:
            return np.zeros((self.num_stems, self.channels, 0), dtype=np.float32)
        self._grow(upto)
        weights = self._weights[:count]
        with np.errstate(invalid="ignore", divide="ignore"):
            block = self._sums[..., :count] / weights
        # MSST: np.nan_to_num after the division (a zero total weight gives 0).
        block = np.nan_to_num(block, copy=False, nan=0.0)
        self._sums = self._sums[..., count:].copy()
        self._weights = self._weights[count:].copy()
        self.released = upto
        return block
