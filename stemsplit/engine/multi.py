"""Cross-track batching: the chunks of several tracks fill one forward pass.

A short clip (a speech corpus' utterance, a sample) is one or two chunks, so a batch
loop that separates one track at a time calls the network with nearly empty batches.
Here each track still runs the one-track pipeline (`pipeline.run_track`: its own chunk
plan, normalisation, shifts, overlap-add and writers), in a thread of its own; only its
model calls go through a `TrackBatcher`, which stacks the chunks several tracks are
waiting on into one call of the network (at most the batch size, counted in chunks)
and hands each track back its own rows.

So a track's numbers are a one-track run's: the same chunks, the same windows, its own
chunks grouped into the same batches (MSST's fades are decided per batch of the track's
chunks, `chunking.batch_windows`); a network in eval mode computes each row of a batch
on its own, so only the rows beside it differ. Chunks of different lengths (the last
chunk of a model whose input length follows the chunk's, as HDemucs') cannot be
stacked: they queue apart, by shape.

A pass runs as soon as a queue holds a full batch, or when every track in flight is
waiting for the network (no more chunks can come before one is answered); a pass takes
the oldest call's chunks, then the next calls' oldest first, splitting the last one it
reaches so the pass is full (the rest goes into the next pass), so whenever two tracks'
calls wait together they share a pass. Passes run one at a time in one driver thread
(`serve`), the batch loop's main thread; a pass short of a full batch that is due only
after a wait goes back to the loop first, so a track it can admit then (room freed by
a track that ended) brings its chunks to that pass.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stemsplit.engine.chunking import plan_chunks
from stemsplit.engine.runner import effective_recipe
from stemsplit.errors import Interrupted
from stemsplit.models.base import SelfChunking
from stemsplit.options import EngineSettings

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(eq=False)
class _Request:
    """One model call of one track: its chunks (rows), how many of them passes took,
    the outputs of those, then its whole output or a pass's error."""

    order: int
    inputs: np.ndarray
    sent: int = 0
    pieces: list[np.ndarray] = field(default_factory=list)
    output: np.ndarray | None = None
    error: BaseException | None = None

    @property
    def left(self) -> int:
        """Rows not yet in a pass."""
        return int(self.inputs.shape[0]) - self.sent


@dataclass(frozen=True)
class _Member:
    """What sizes a track's model calls to one network: its rate, chunking and batch."""

    samplerate: int
    recipe: Any
    segment: int
    valid_length: Callable[[int], int] | None

    @property
    def capacity(self) -> int:
        """Chunks per forward pass: the batch size (`--batch-size` or the recipe's)."""
        return int(self.recipe.batch_size)


class TrackBatcher:
    """Pools the model calls of several tracks' threads into forward passes.

    `runners` (network id -> runner, as the Separator builds them) become `self.runners`:
    the same keys, each a callable with the runner's signature that waits for its rows
    of a pooled pass. A thread separating a track declares itself with `track()` (or
    a loop admits it with `admit()`, and the thread calls `leave()` when done).
    """

    def __init__(self, runners: Mapping[int, Runner], members: Mapping[int, _Member],
                 tta: bool = False) -> None:  # fmt: skip
        self._inner = dict(runners)
        self._members = dict(members)
        self._factor = 3 if tta else 1  # TTA: each chunk runs three times (runner.py)
        # rows per forward pass at most (`--batch-size` chunks, each thrice with TTA)
        self.capacity = max(m.capacity for m in self._members.values()) * self._factor
        self._cond = threading.Condition()
        self._queues: dict[tuple[int, tuple[int, ...]], list[_Request]] = {}
        self._orders = itertools.count()
        self._active = 0  # tracks in flight
        self._waiting = 0  # of them, those waiting for the network
        self._stopped: BaseException | None = None
        self.passes = 0
        self.chunks = 0
        self.shared_passes = 0  # passes holding the chunks of more than one track
        self.runners: dict[int, Runner] = {key: self._caller(key) for key in self._inner}

    @classmethod
    def for_models(cls, bundles: Sequence[Any], settings: EngineSettings,
                   runners: Mapping[int, Runner]) -> TrackBatcher | None:  # fmt: skip
        """A batcher over the networks of `bundles`, or None where pooling cannot apply:
        a network that chunks the track itself (UVR's MDX/VR), batches of one chunk,
        `--precision int8`, whose activation scales are taken over the whole batch (a
        track's stems would then depend on the tracks beside it), or no `--batch-size`:
        a config's own batch size keeps one track at a time, since on a small CPU large
        pooled passes can cost more than they save (docs/performance.md)."""
        if settings.precision == "int8" or settings.batch_size is None:
            return None
        members: dict[int, _Member] = {}
        for bundle in bundles:
            for member in bundle.members:
                if isinstance(member, SelfChunking):
                    return None
                recipe, segment = effective_recipe(member, settings)
                members[id(member)] = _Member(member.samplerate, recipe, segment,
                                              getattr(member, "valid_length", None))
        if not members or max(m.capacity for m in members.values()) <= 1:
            return None
        return cls({key: runners[key] for key in members}, members, settings.tta)

    def rows(self, lengths: Mapping[int, int]) -> int:
        """The rows a track brings to forward passes in all (its chunks, three times over
        with TTA; by the network that takes most), from its lengths in samples by model
        rate: how much of the passes it can fill."""
        most = 1
        for member in self._members.values():
            length = lengths.get(member.samplerate)
            if length:
                plan = plan_chunks(length, member.recipe, member.segment, member.valid_length)
                most = max(most, len(plan.chunks) * self._factor)
        return most

    @contextmanager
    def track(self) -> Iterator[None]:
        """Around one track's separation: while it runs, passes wait for its chunks."""
        self.admit()
        try:
            yield
        finally:
            self.leave()

    def admit(self) -> None:
        """A track is in flight from now (a loop may admit it before its thread starts)."""
        with self._cond:
            self._active += 1

    def leave(self) -> None:
        """A track admitted is done: passes no longer wait for it."""
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def stop(self, error: BaseException) -> None:
        """Every model call waiting now or made later raises `error` (Ctrl-C: the tracks
        in flight abort their writers)."""
        with self._cond:
            self._stopped = error
            self._cond.notify_all()

    def serve(self, timeout: float) -> bool:
        """Run one pass in this thread if one is due within `timeout` seconds (whether
        it ran); a pass short of a full batch that became due while waiting is left to
        the next call, so the caller admits first the tracks it has room for now (their
        chunks join that pass). The driver, one thread, calls it in a loop; on CPU that
        is the main thread: glibc gives every other thread its own heap, where a
        network's large activations come back as fresh pages each pass (~60 % slower
        HTDemucs here; the main heap keeps them, `stemsplit.allocator`)."""
        with self._cond:
            due = self._due()
            if due is None:
                self._cond.wait(timeout)
                due = self._due()
                if due is not None and not self._full(due):
                    return False
            if due is None:
                return False
            self._run(due)
            return True

    def _caller(self, key: int) -> Runner:
        def call(inputs: np.ndarray) -> np.ndarray:
            return self._submit(key, inputs)

        return call

    def _submit(self, key: int, inputs: np.ndarray) -> np.ndarray:
        """A track's model call: queue its chunks, wait until the driver ran them."""
        queue_key = (key, tuple(inputs.shape[1:]))
        with self._cond:
            if self._stopped is not None:
                raise self._stopped
            request = _Request(next(self._orders), inputs)
            self._queues.setdefault(queue_key, []).append(request)
            self._waiting += 1
            self._cond.notify_all()  # the driver looks again
            try:
                while request.output is None and request.error is None:
                    if self._stopped is not None and request in self._queues[queue_key]:
                        self._queues[queue_key].remove(request)
                        raise self._stopped
                    self._cond.wait()
            finally:
                self._waiting -= 1
        if request.error is not None:
            raise request.error
        assert request.output is not None
        return request.output

    def _due(self) -> tuple[int, tuple[int, ...]] | None:
        """The queue to run now: the oldest full one, else (every track waiting) the one
        with the oldest request; None to wait for more chunks."""
        if self._stopped is not None:
            return None
        queued = [(q[0].order, k) for k, q in self._queues.items() if q]
        if not queued:
            return None
        full = [(order, k) for order, k in queued if self._full(k)]
        if full:
            return min(full)[1]
        if self._waiting >= self._active:
            return min(queued)[1]
        return None

    def _capacity(self, queue_key: tuple[int, tuple[int, ...]]) -> int:
        return self._members[queue_key[0]].capacity * self._factor

    def _full(self, queue_key: tuple[int, tuple[int, ...]]) -> bool:
        return sum(r.left for r in self._queues[queue_key]) >= self._capacity(queue_key)

    def _run(self, queue_key: tuple[int, tuple[int, ...]]) -> None:
        """Run one pass of `queue_key`'s requests with the lock released (called with it
        held): rows of the oldest request, then of the next ones, oldest first, up to
        the batch (the last request taken may give only part of its rows; its rest
        leads the next pass). Rows are computed on their own in eval mode, so where a
        pass splits a call changes no output. A request is answered once all its rows
        ran. A failed pass fails each of its tracks; an interruption also stops the
        driver."""
        queue = self._queues[queue_key]
        space = self._capacity(queue_key)
        taken: list[tuple[_Request, int, int]] = []  # request, its rows start:stop
        for request in queue:
            rows = min(request.left, space)
            taken.append((request, request.sent, request.sent + rows))
            request.sent += rows
            space -= rows
            if not space:
                break
        self._queues[queue_key] = [r for r in queue if r.left]
        self._cond.release()
        try:
            stacked = np.concatenate([r.inputs[start:stop] for r, start, stop in taken])
            outputs = self._inner[queue_key[0]](stacked)
            offset = 0
            for request, start, stop in taken:
                request.pieces.append(outputs[offset : offset + stop - start])
                offset += stop - start
                if stop == request.inputs.shape[0]:  # its last rows: answer it
                    pieces, request.pieces = request.pieces, []
                    request.output = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        except BaseException as err:
            for request, _, _ in taken:
                request.error = err
            if not isinstance(err, Exception) or isinstance(err, Interrupted):
                raise
        finally:
            self._cond.acquire()
            failed = {id(r) for r, _, _ in taken if r.error is not None}
            if failed:  # the rest of a call that failed is not run
                self._queues[queue_key] = [r for r in self._queues[queue_key]
                                           if id(r) not in failed]  # fmt: skip
            self.passes += 1
            self.chunks += sum(stop - start for _, start, stop in taken)
            self.shared_passes += len(taken) > 1
            self._cond.notify_all()
