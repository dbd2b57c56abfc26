"""Separation while the input is still arriving (pipes, `Separator.stream`).

File mode spools the whole input first (`source.SpoolSource`): chunk plans need the
track's length, Demucs' normalisation needs the whole track's mean and std. Here the
input comes in blocks of unknown total length, so:

- `LiveInput` reads the blocks only when a consumer needs more samples, and fans them
  out to one `LiveSource` per sample rate (soxr streams, the same resampler and length
  contract as `audio.reader`: `round(frames * rate / input_rate)` frames).
- A `LiveSource` is a `TrackSource` over a ring of recent samples: it keeps only what
  its registered cursors (the passes' next chunks, sequential readers of the
  mixture) may still read, so memory does not grow with the input's length. Its
  `length` is what has arrived so far, then the true length once the input ends.
- `live_pass` is the engine's pass (`runner.run_pass`) with chunks planned as the input
  arrives. A chunk runs as soon as it is *final*: it has the same geometry in the plan
  of every track at least as long as what has arrived (checked by planning over what
  has arrived and over a longer hypothetical track, and comparing), and every sample it
  reads has arrived. The rest of the plan is made with the true length once the input
  ends. Chunk positions, padding, windows and overlap-add are therefore those of file
  mode, sample for sample: a model without track statistics gives file mode's output.
- Track statistics (recipe normalisation `track-mean-std`: Demucs, Conv-TasNet,
  MSST's `inference.normalize`) come from a running window: each chunk is normalised
  by the mean and std of the mono mix over `[0, min(read_stop, length))`, everything
  from the track's start to the last sample the chunk reads (zero padding excluded),
  and its output is denormalised by the same two numbers before overlap-add. Chunks
  that read up to the end use the whole track's statistics, as file mode does for
  every chunk. Chunks near the start see only the first seconds' statistics; see
  docs/pipes.md for what that costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from stemsplit.engine.chunking import (
    Chunk,
    OverlapAdd,
    Plan,
    batch_windows,
    per_batch_windows,
    plan_chunks,
)
from stemsplit.engine.source import TrackSource
from stemsplit.models.base import Recipe, SeparationModel
from stemsplit.options import EngineSettings

_INFINITE = 1 << 62


class LiveInput:
    """Blocks `(channels, n)` at `samplerate`, pulled on demand, fanned out by rate."""

    def __init__(self, blocks: Iterable[np.ndarray], samplerate: int, channels: int = 2) -> None:
        self._blocks = iter(blocks)
        self.samplerate = samplerate
        self.channels = channels
        self.frames = 0  # frames read at the input's rate
        self.eof = False
        self._sources: dict[int, LiveSource] = {}

    def source(self, rate: int) -> LiveSource:
        """The input at `rate` (one shared source per rate)."""
        if rate not in self._sources:
            if self.frames:
                raise RuntimeError("sources must be made before the input is read")
            self._sources[rate] = LiveSource(self, rate)
        return self._sources[rate]

    def pull(self) -> bool:
        """Read one more block into every source; False once the input has ended."""
        if self.eof:
            return False
        try:
            block = next(self._blocks)
        except StopIteration:
            self.eof = True
            for source in self._sources.values():
                source._finish(self.frames)
            return False
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, n) blocks, got {block.shape}")
        self.frames += block.shape[1]
        for source in self._sources.values():
            source._push(block)
        return True


class LiveCursor:
    """A reader's position in a `LiveSource`: samples before it may be dropped."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.position = 0

    def close(self) -> None:
        if self in self.source._cursors:
            self.source._cursors.remove(self)
            self.source._trim()


class LiveSource(TrackSource):
    """One rate of a `LiveInput`: the samples still needed, readable by range.

    Reads past what has arrived wait for (pull) more input; reads outside the track
    (before 0, past the end once known) are zeros, as `TrackSource.read`.
    """

    def __init__(self, hub: LiveInput, samplerate: int) -> None:
        self.hub = hub
        self.channels = hub.channels
        self.samplerate = samplerate
        self.mean, self.std = 0.0, 1.0  # unused: live passes normalise per chunk
        self._resampler = None
        if samplerate != hub.samplerate:
            import soxr

            self._resampler = soxr.ResampleStream(hub.samplerate, samplerate, hub.channels,
                                                  dtype="float32", quality="HQ")  # fmt: skip
        self._ring = np.zeros((hub.channels, 0), np.float32)
        self._base = 0  # track position of _ring[:, 0]
        self._arrived = 0
        self._final: int | None = None
        self._cursors: list[LiveCursor] = []
        # Running sums of the mono mix: (position, sum, sum of squares) at block
        # boundaries from the ring's start on (statistics of any prefix of the track).
        self._marks: list[tuple[int, float, float]] = [(0, 0.0, 0.0)]
        self.peak_ring = 0  # the most samples the ring held (memory checks)

    # -- arrival --------------------------------------------------------------------
    @property
    def length(self) -> int:  # type: ignore[override]
        return self._final if self._final is not None else self._arrived

    @property
    def eof(self) -> bool:
        return self._final is not None

    @property
    def available(self) -> int:
        return self._arrived

    def _push(self, block: np.ndarray) -> None:
        if self._resampler is not None:
            block = self._resampler.resample_chunk(np.ascontiguousarray(block.T)).T
        self._append(block)

    def _finish(self, input_frames: int) -> None:
        total = round(input_frames * self.samplerate / self.hub.samplerate)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(
                np.zeros((0, self.channels), np.float32), last=True).T  # fmt: skip
            self._append(tail)
        if self._arrived > total:  # soxr may give a frame or two more: cut, as the reader
            keep = total - self._base
            self._ring = self._ring[:, : max(keep, 0)]
            self._arrived = total
            self._marks = [m for m in self._marks if m[0] <= total]
        elif self._arrived < total:
            self._append(np.zeros((self.channels, total - self._arrived), np.float32))
        self._final = total

    def _append(self, block: np.ndarray) -> None:
        if not block.shape[1]:
            return
        block = np.ascontiguousarray(block, dtype=np.float32)
        mono = block.mean(axis=0, dtype=np.float64)
        position, total, squares = self._marks[-1]
        self._marks.append((position + block.shape[1], total + float(mono.sum()),
                            squares + float(np.dot(mono, mono))))  # fmt: skip
        self._ring = np.concatenate([self._ring, block], axis=1)
        self._arrived += block.shape[1]
        self.peak_ring = max(self.peak_ring, self._ring.shape[1])
        self._trim()

    def ensure(self, stop: int) -> None:
        """Pull input until `stop` samples have arrived or the input ends."""
        while self._final is None and self._arrived < stop:
            self.hub.pull()

    # -- memory ---------------------------------------------------------------------
    def cursor(self) -> LiveCursor:
        cursor = LiveCursor(self)
        cursor.position = self._base
        self._cursors.append(cursor)
        return cursor

    def _trim(self) -> None:
        keep_from = min((c.position for c in self._cursors), default=self._arrived)
        drop = min(keep_from, self._arrived) - self._base
        if drop > 0:
            self._ring = self._ring[:, drop:].copy()
            self._base += drop
            # Keep the last mark at or before the ring's start (prefix statistics).
            first = max(i for i, m in enumerate(self._marks) if m[0] <= self._base)
            del self._marks[:first]

    # -- reading --------------------------------------------------------------------
    def _read_raw(self, start: int, stop: int) -> np.ndarray:
        self.ensure(stop)
        if start < self._base:
            raise RuntimeError(f"live source: samples {start}.. were already dropped "
                               f"(kept from {self._base})")  # fmt: skip
        return self._ring[:, start - self._base : stop - self._base]

    def read(self, start: int, stop: int) -> np.ndarray:
        self.ensure(stop)
        return super().read(start, stop)

    def prefix_stats(self, stop: int) -> tuple[float, float]:
        """Mean and std (ddof 1) of the mono mix over `[0, stop)` (`stop` >= ring start)."""
        stop = min(stop, self._arrived)
        index = max(i for i, m in enumerate(self._marks) if m[0] <= stop)
        position, total, squares = self._marks[index]
        if stop > position:
            mono = self._ring[:, position - self._base : stop - self._base].mean(
                axis=0, dtype=np.float64)  # fmt: skip
            total += float(mono.sum())
            squares += float(np.dot(mono, mono))
        if stop <= 0:
            return 0.0, 1.0
        mean = total / stop
        variance = (squares - stop * mean**2) / max(stop - 1, 1)
        return mean, float(np.sqrt(max(variance, 0.0)))


class CursorView(TrackSource):
    """A `LiveSource` read in order by one reader (a residual, the mixture): its reads
    move a cursor, so the ring keeps what this reader has not read yet."""

    def __init__(self, source: LiveSource) -> None:
        self.inner = source
        self.channels = source.channels
        self.samplerate = source.samplerate
        self.mean, self.std = 0.0, 1.0
        self._cursor = source.cursor()

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.inner.length

    def read(self, start: int, stop: int) -> np.ndarray:
        out = self.inner.read(start, stop)
        self._cursor.position = max(self._cursor.position, min(stop, self.inner.available))
        self.inner._trim()
        return out

    def blocks(self, most: int = 1 << 16) -> Iterator[np.ndarray]:
        """The whole signal in order, each block as soon as its samples have arrived."""
        position = 0
        try:
            while True:
                self.inner.ensure(position + 1)
                stop = min(self.inner.available, position + most)
                if stop <= position:
                    return
                yield self.read(position, stop).copy()
                position = stop
        finally:
            self.close()

    def close(self) -> None:
        self._cursor.close()


class _Scaled(TrackSource):
    """A chunk's normalised view: (x - mean) / std inside the track, zeros outside."""

    def __init__(self, inner: TrackSource, mean: float, std: float) -> None:
        self.inner = inner
        self.channels, self.samplerate = inner.channels, inner.samplerate
        self.mean, self.std = mean, std

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.inner.length

    def read(self, start: int, stop: int) -> np.ndarray:
        out = self.inner.read(start, stop)
        lead = getattr(self.inner, "delay", 0)  # a shifted pass: its leading zeros stay
        lo, hi = max(start, lead) - start, min(stop, self.length) - start
        if hi > lo:
            out[:, lo:hi] = (out[:, lo:hi] - np.float32(self.mean)) / np.float32(self.std)
        return out


class _Planner:
    """Chunks of the plan that are final while the track's length is still unknown.

    Chunk positions never depend on the length (starts every `stride`, from 0); only
    the chunks near the end do (short last chunk, its window, reflect at the end), and
    MSST's border (fixed once more than `2 * border` samples have arrived). A chunk is
    final when it is full length, not the last one, and everything it reads has
    arrived. Once the input ends, the rest comes from `plan_chunks` over the true
    length, and the chunks already run are checked against that plan.
    """

    def __init__(self, recipe: Recipe, segment: int, valid_length: Callable[[int], int]
                 ) -> None:  # fmt: skip
        from stemsplit.engine.chunking import stride_for

        self.recipe, self.segment, self.valid_length = recipe, segment, valid_length
        self.stride = stride_for(recipe, segment)
        self.reflect = recipe.padding == "reflect-border"
        target = valid_length(segment) if recipe.padding == "context" else segment
        self.delta = target - segment
        border = segment - self.stride if self.reflect else 0
        self.border = max(border, 0)
        # How far before a chunk's start the rest of the plan may read (a short last
        # chunk is centred in a longer model input; reflection at the track's end).
        self.lookback = 2 * target + 2 * self.border
        self.plan = Plan((), _INFINITE, self.border, segment, recipe.window,
                         "reflect-border" if self.reflect else "context")  # fmt: skip

    def ready(self, arrived: int, done: int) -> list[Chunk]:
        border = self.border
        if self.reflect and border and arrived <= 2 * border:
            return []  # the border is not decided yet (tracks up to 2 * border get none)
        chunks: list[Chunk] = []
        index = done
        while True:
            start = index * self.stride
            read_start = start - self.delta // 2
            read_stop = read_start + self.segment + self.delta
            end = start + self.segment  # full length: the track reaches past it
            if end - border > arrived or read_stop - border > arrived:
                return chunks
            if start + self.stride >= arrived + 2 * border:  # may be the last chunk
                return chunks
            chunks.append(Chunk(index, start, self.segment, read_start, read_stop,
                                self.delta // 2, index == 0, False))  # fmt: skip
            index += 1

    def final(self, length: int, done: int, last: Chunk | None) -> tuple[Plan, list[Chunk]]:
        plan = plan_chunks(length, self.recipe, self.segment, self.valid_length)
        if last is not None and (plan.border != self.border or plan.chunks[done - 1] != last):
            raise RuntimeError(f"live plan diverged from the file plan at chunk {done - 1}: "
                               f"{last} vs {plan.chunks[done - 1]}")  # fmt: skip
        return plan, list(plan.chunks[done:])


def live_pass(
    runner: Callable[[np.ndarray], np.ndarray],
    model: SeparationModel,
    source: LiveSource | _Delayed,
    recipe: Recipe,
    segment: int,
    tta: bool = False,
    normalize: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """`runner.run_pass` over a source still arriving: [stems, channels, n] blocks in
    order, each as soon as no later chunk can touch it."""
    from stemsplit.engine.runner import _apply_tta

    planner = _Planner(recipe, segment, model.valid_length)
    cursor = source.cursor()
    ola = OverlapAdd(len(model.sources), source.channels, _INFINITE)
    emitted = 0  # released samples, in the plan's (border-padded) coordinates
    done = 0
    last: Chunk | None = None
    final = False
    try:
        while not final:
            ready = planner.ready(source.available, done) if not source.eof else []
            plan = planner.plan
            if per_batch_windows(plan):
                # Run whole batches of `batch_size` chunks counted from the track's
                # start, as file mode does (a last batch is never ready before the end).
                whole = (done + len(ready)) // recipe.batch_size * recipe.batch_size
                ready = ready[: whole - done]
            if not ready:
                if not source.eof:
                    source.hub.pull()
                    continue
                if source.length == 0:
                    return
                plan, ready = planner.final(source.length, done, last)
                final = True
                ola.total = plan.padded_length
            index = 0
            while index < len(ready):
                batch = [ready[index]]
                scales: list[tuple[float, float]] = []
                first = _chunk_input(source, plan, ready[index], normalize, scales)
                inputs = [first]
                index += 1
                while len(batch) < recipe.batch_size and index < len(ready):
                    candidate = _chunk_input(source, plan, ready[index], normalize, scales)
                    if candidate.shape != first.shape:
                        scales.pop()
                        break
                    batch.append(ready[index])
                    inputs.append(candidate)
                    index += 1
                stacked = np.stack(inputs)
                outputs = _apply_tta(runner, stacked) if tta else runner(stacked)
                windows = batch_windows(plan, batch)
                for chunk, output, (mean, std), window in zip(batch, outputs, scales, windows):
                    contribution = output[..., chunk.trim : chunk.trim + chunk.length]
                    if normalize:
                        contribution = contribution * np.float32(std) + np.float32(mean)
                    ola.add(chunk.start, contribution, window)
                last = batch[-1]
                done = last.index + 1
                if on_chunk:
                    on_chunk(done, len(plan.chunks) if final else done + 1)
                if final and done >= len(plan.chunks):
                    upto = plan.padded_length
                else:
                    upto = done * planner.stride  # the next chunk's start
                    cursor.position = max(cursor.position, upto - planner.lookback)
                    source._trim()
                block = ola.release(upto)
                start, emitted = emitted, emitted + block.shape[-1]
                length = source.length if final else _INFINITE
                lo, hi = max(start, plan.border), min(emitted, plan.border + length)
                block = block[..., lo - start : hi - start] if hi > lo else block[..., :0]
                if block.shape[-1]:
                    yield block
    finally:
        cursor.close()


def _chunk_input(source: LiveSource | _Delayed, plan: Plan, chunk: Chunk, normalize: bool,
                 scales: list[tuple[float, float]]) -> np.ndarray:  # fmt: skip
    """A chunk's model input; with `normalize`, scaled by the running statistics."""
    if not normalize:
        scales.append((0.0, 1.0))
        return _read_from(source, plan, chunk)
    stop = min(chunk.read_stop - plan.border, source.length)
    mean, std = source.prefix_stats(stop)
    std = std if std > 1e-8 else 1.0  # silence: unscaled, as NormalizedSource
    scales.append((mean, std))
    return _read_from(_Scaled(source, mean, std), plan, chunk)


def _read_from(source: TrackSource, plan: Plan, chunk: Chunk) -> np.ndarray:
    from stemsplit.engine.runner import _read_chunk

    return _read_chunk(source, plan, chunk)


class _Delayed(TrackSource):
    """A live source delayed by `delay` samples (zeros before): Demucs' shifted passes."""

    def __init__(self, inner: LiveSource, delay: int) -> None:
        self.inner = inner
        self.delay = delay
        self.hub = inner.hub
        self.channels, self.samplerate = inner.channels, inner.samplerate

    @property
    def length(self) -> int:  # type: ignore[override]
        return self.inner.length + self.delay

    @property
    def eof(self) -> bool:
        return self.inner.eof

    @property
    def available(self) -> int:
        return self.inner.available + self.delay

    def ensure(self, stop: int) -> None:
        self.inner.ensure(stop - self.delay)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.inner.read(start - self.delay, stop - self.delay)

    def prefix_stats(self, stop: int) -> tuple[float, float]:
        return self.inner.prefix_stats(stop - self.delay)

    def cursor(self) -> _DelayedCursor:
        return _DelayedCursor(self.inner.cursor(), self.delay)

    def _trim(self) -> None:
        self.inner._trim()


class _DelayedCursor:
    def __init__(self, cursor: LiveCursor, delay: int) -> None:
        self._cursor = cursor
        self.delay = delay

    @property
    def position(self) -> int:
        return self._cursor.position + self.delay

    @position.setter
    def position(self, value: int) -> None:
        self._cursor.position = max(0, value - self.delay)

    def close(self) -> None:
        self._cursor.close()


def live_stream(
    model: SeparationModel,
    source: LiveSource,
    settings: EngineSettings,
    runner: Callable[[np.ndarray], np.ndarray] | None,
    normalize: bool,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """`runner.separate_stream` for a live source: all passes (shifts) of one model."""
    import random

    from stemsplit.audio.blocks import align, skip
    from stemsplit.engine.runner import ModelRunner, effective_recipe

    runner = runner or ModelRunner(model, settings.device, settings.precision)
    recipe, segment = effective_recipe(model, settings)
    if settings.shifts <= 0:
        yield from live_pass(runner, model, source, recipe, segment, settings.tta, normalize,
                             on_chunk)  # fmt: skip
        return
    max_shift = int(0.5 * model.samplerate)
    rng = random.Random(settings.seed)
    streams = []
    for _ in range(settings.shifts):
        delay = max_shift - rng.randint(0, max_shift)
        passes = live_pass(runner, model, _Delayed(source, delay), recipe, segment,
                           settings.tta, normalize, on_chunk)  # fmt: skip
        streams.append(skip(passes, delay))
    for blocks in align(streams):
        yield sum(blocks[1:], blocks[0]) / np.float32(settings.shifts)


def fit_length_later(stream: Iterable[np.ndarray], length: Callable[[], int],
                     hold: int = 256) -> Iterator[np.ndarray]:
    """`streams.fit_length` when the length is known only once the stream ends (a
    resampled live stream may be a few samples off): `hold` samples are kept back."""
    pending: list[np.ndarray] = []
    held = 0
    emitted = 0
    shape = None
    for block in stream:
        if not block.shape[-1]:
            continue
        shape = block.shape[:-1]
        pending.append(block)
        held += block.shape[-1]
        if held > hold:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=-1)
            out, rest = joined[..., : held - hold], joined[..., held - hold :]
            pending, held = [rest], hold
            emitted += out.shape[-1]
            yield out
    total = length()
    if shape is None:
        return
    joined = np.concatenate(pending, axis=-1) if pending else np.zeros((*shape, 0), np.float32)
    want = total - emitted
    if want < 0:
        raise RuntimeError(f"stream overshot its length by {-want} samples")
    if joined.shape[-1] < want:
        pad = np.zeros((*shape, want - joined.shape[-1]), np.float32)
        joined = np.concatenate([joined, pad], axis=-1)
    if want:
        yield joined[..., :want]
