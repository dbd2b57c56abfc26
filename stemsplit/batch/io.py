"""Batch throughput and hygiene: decode ahead, encode behind, sweep up after killed runs.

While the model works on track N, a thread pool decodes the next tracks into their
spool files (`Prefetcher`), and each stem is encoded by its own thread fed through a
short queue (`BackgroundWriter`), so decoding and encoding overlap inference. Temporary
files carry the pid of the process that wrote them; a rerun removes those of dead
processes (`remove_stale`), which is how a killed batch leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stemsplit.atomic import PARTIAL_MARKER, SPOOL_PREFIX, partial_pid

log = logging.getLogger(__name__)

_QUEUE_BLOCKS = 8  # blocks a stem's encoder may lag behind inference (bounded memory)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (our own pid counts as alive)."""
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: assume it is gone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(outputs: Iterable[Path], out_dir: Path | None = None) -> int:
    """Delete the temporary files of dead processes in the outputs' folders (stems,
    records, reports, images: every writer uses `atomic.partial_path`) and their spool
    folders in `out_dir`."""
    removed = 0
    folders = {Path(path).parent for path in outputs}
    for folder in folders:
        if not folder.is_dir():
            continue
        for leftover in folder.glob(f".*{PARTIAL_MARKER}*"):
            pid = partial_pid(leftover.name)
            if pid is not None and not pid_alive(pid):
                leftover.unlink(missing_ok=True)
                removed += 1
    if out_dir is not None and Path(out_dir).is_dir():
        for spool in Path(out_dir).glob(SPOOL_PREFIX + "*"):
            digits = spool.name[len(SPOOL_PREFIX):]
            if digits.isdigit() and not pid_alive(int(digits)):
                shutil.rmtree(spool, ignore_errors=True)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)
    return removed


class BackgroundWriter:
    """A `StemWriter` fed through a bounded queue by its own thread.

    Same calls as `StemWriter` (write, close, abort, clipped_samples). The file is
    opened here, so bad paths still fail at once; `close()` waits for the queue to
    drain and publishes the file, so a closed writer is as final as a `StemWriter`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from stemsplit.audio.writer import StemWriter

        self._writer = StemWriter(*args, **kwargs)
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
        self._error: BaseException | None = None
        self._dropping = False
        self._thread = threading.Thread(
            target=self._drain, name=f"stemsplit-encode-{self._writer.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def clipped_samples(self) -> int:
        return self._writer.clipped_samples

    @property
    def path(self) -> Path:
        return self._writer.path

    def write(self, block: np.ndarray) -> None:
        self._raise_error()
        # a copy: the producer may reuse or modify its arrays once this returns
        self._queue.put(np.array(block, dtype=np.float32))

    def close(self) -> None:
        self._stop()
        self._raise_error()
        self._writer.close()

    def abort(self) -> None:
        self._dropping = True
        self._stop()
        self._writer.abort()

    def _drain(self) -> None:
        while (block := self._queue.get()) is not None:
            if self._error is not None or self._dropping:
                continue
            try:
                self._writer.write(block)
            except BaseException as err:  # handed to the producer on its next call
                self._error = err

    def _stop(self) -> None:
        if self._thread.is_alive():
            if self._dropping:  # make room at once: nothing queued matters any more
                while True:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        break
            self._queue.put(None)
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._dropping = True
            self._stop()
            raise error


class Prefetcher:
    """Decode tracks ahead of the model in `workers` threads, at most `workers` ahead.

    `get(i)` returns track i's prepared input (or raises its decode error); whatever
    was decoded and never taken is closed (spool files deleted) by `close()`.
    """

    def __init__(self, prepare: Callable[[Path], Any], tracks: Sequence[Path], workers: int):
        self.prepare = prepare
        self.tracks = list(tracks)
        self.ahead = max(workers, 1)
        self.pool = ThreadPoolExecutor(max_workers=self.ahead,
                                       thread_name_prefix="stemsplit-decode")
        self.futures: dict[int, Future[Any]] = {}
        self.next_index = 0

    def get(self, index: int) -> Any:
        while self.next_index <= min(index + self.ahead, len(self.tracks) - 1):
            self.futures[self.next_index] = self.pool.submit(
                self.prepare, self.tracks[self.next_index]
            )
            self.next_index += 1
        return self.futures.pop(index).result()

    def close(self) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)
        for future in self.futures.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                future.result().close()
        self.futures.clear()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
