"""The batch loop with cross-track batching: several tracks in flight, their chunks
pooled into each forward pass (`engine.multi.TrackBatcher`).

Tracks start in order, each in a thread of its own running the ordinary one-track code
(`run.py`'s `_one_track`: records, errors, cleanup alike); the loop's own thread (the
main one) admits them and runs the forward passes. What is in flight is bounded
by chunks, not tracks: the tracks running together bring at most `IN_FLIGHT` passes'
worth of chunks at a time (a track counts the chunks of one of its model calls), so one
pass can be full while the others' tracks read, overlap-add and write beside it; a track
longer than that (more chunks than `IN_FLIGHT` passes hold) runs alone, with the memory
of a one-track run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from stemsplit.engine.multi import TrackBatcher
from stemsplit.options import Progress, TrackResult

log = logging.getLogger(__name__)

IN_FLIGHT = 2  # passes' worth of chunks the tracks in flight may bring


class _Budget:
    """Rows in flight: taken by the loop for each track it starts, given back by the
    track's thread when it ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def try_take(self, amount: int) -> bool:
        """Take `amount` if it fits (anything fits when nothing runs)."""
        with self._lock:
            if self.used and self.used + amount > self.limit:
                return False
            self.used += amount
            return True

    def give(self, amount: int) -> None:
        with self._lock:
            self.used -= amount


def run_pooled(
    batcher: TrackBatcher,
    count: int,
    take: Callable[[int], Any],
    run_one: Callable[[int, Callable[[], Any]], TrackResult],
) -> list[TrackResult]:
    """Run `count` tracks (by position), several at once; this thread runs the passes.

    `take(position)` gives a track's prepared input (decoded ahead or now; its error is
    the track's failure, raised inside `run_one`); `run_one(position, prepared)` separates
    it through `batcher.runners` and returns its result, failures included.
    """
    limit = IN_FLIGHT * batcher.capacity
    log.info("%d tracks, pooling chunks across tracks: up to %d chunks per forward pass",
             count, batcher.capacity)  # fmt: skip
    budget = _Budget(limit)
    results: list[TrackResult | None] = [None] * count

    def work(position: int, prepared: Callable[[], Any], share: int) -> None:
        try:
            results[position] = run_one(position, prepared)
        finally:
            budget.give(share)
            batcher.leave()  # wakes this thread's serve(): room for the next track

    running: list[Future[None]] = []
    started = 0
    following: tuple[Callable[[], Any], int] | None = None  # decoded, waiting for room
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="stemsplit-track") as pool:
        try:
            while started < count or running:
                while started < count:
                    if following is None:
                        prepared, rows = _prepared(batcher, take, started)
                        # a track longer than the passes in flight hold runs alone
                        following = prepared, limit if rows > limit else min(rows, batcher.capacity)
                    if not budget.try_take(following[1]):
                        break
                    batcher.admit()  # counted from now: passes wait for its first chunks
                    running.append(pool.submit(work, started, *following))
                    started, following = started + 1, None
                batcher.serve(timeout=0.05)
                for future in [f for f in running if f.done()]:
                    running.remove(future)
                    future.result()  # a track's unexpected error (a bug) stops the run
        except BaseException as err:  # Ctrl-C, SIGTERM: the tracks in flight abort
            batcher.stop(err)
            wait(running)
            raise
    log.info("%d forward passes (%d shared by several tracks), %.1f chunks each on average",
             batcher.passes, batcher.shared_passes, batcher.chunks / max(batcher.passes, 1))
    return [result for result in results if result is not None]


def _prepared(batcher: TrackBatcher, take: Callable[[int], Any],
              position: int) -> tuple[Callable[[], Any], int]:  # fmt: skip
    """The track's prepared input as `run_one` asks for it, and the rows it brings."""
    try:
        prepared = take(position)
    except Exception as err:  # a decode error belongs to its track, not to the loop
        failure = err

        def fail() -> Any:
            raise failure

        return fail, 1
    lengths = {rate: source.length for rate, source in prepared.sources.items()}
    return (lambda: prepared), batcher.rows(lengths)


def serialized(progress: Callable[[Progress], None] | None
               ) -> Callable[[Progress], None] | None:  # fmt: skip
    """`progress` called by one track's thread at a time (renderers are not thread-safe)."""
    if progress is None:
        return None
    lock = threading.Lock()

    def report(event: Progress) -> None:
        with lock:
            progress(event)

    return report
