"""Start-up overlapped with work: the input is decoded while `import torch` runs.

`stemsplit song.wav` spends its first seconds importing torch (1-3.5 s), then reads the
model and plans, then decodes the whole input into its spool before the first segment:
Demucs normalises by the whole track's mean and std, so the first segment waits for
the last sample (about 1.3 s of CPU for a 4-minute song). `early_input` starts that
decode at once, with the sample rates the run will most likely need (the zoo cards';
44.1 kHz for a local checkpoint), in a forked worker process: a thread would share the
GIL with the import, and the hand-offs cost more than the overlap gains once the CPU
is busy (measured: docs/performance.md). The worker runs at the lowest priority, so it
only takes a core the import leaves idle. It makes the same calls as
`engine.pipeline.prepare_input` (`read_blocks` per rate into a `SpoolSource`), so the
spool, and every output sample, is the same. A local checkpoint is hashed (for its
label) in a thread meanwhile: hashlib works without the GIL.

The run takes the result through `take` (the `Separator`, where it would decode) when
its path, rates and channels match; anything else (a wrong guess, a failure, a track
that is skipped) is thrown away and the run decodes as before, so errors come from the
usual place. The worker's log lines (a downmix warning) are said when the run takes its
result, as the usual decode would say them. Ctrl-C and errors stop it and delete what
it wrote. Linux only (fork).

Off unless `STEMSPLIT_STARTUP_OVERLAP=1`: on the 2-core machine it was measured on,
which never had a core to spare (load 3-10), it made the first segment start 0.3-0.8 s
later, not sooner: the worker waits for CPU the run needs, the parent pays copy-on-
write faults during the import, and the first segment no longer reuses the heap the
usual decode grew (docs/performance.md, "Start-up overlap (round 3)";
`benchmarks/startup.py --first-segment` compares). It can only pay where a core is
idle while torch imports; turn it on by default once that is measured.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stemsplit.request import Request

log = logging.getLogger(__name__)

ENV = "STEMSPLIT_STARTUP_OVERLAP"  # "1": on (off by default: see above)
GUESSED_RATE = 44100  # a local checkpoint's rate is known once torch has read it
GUESSED_CHANNELS = 2  # every zoo model is stereo; a mono one decodes again


class EarlyDecode:
    """One input decoded into spool files by a forked worker (`early_input` starts it)."""

    def __init__(self, path: Path, info: Any, rates: Sequence[int], folder: Path) -> None:
        stat = path.stat()
        self.key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
        self.info = info
        self.rates = sorted(set(rates))
        self.folder = folder  # removed at the end with what is left in it, and so are
        self.created = [p for p in folder.parents if not p.exists()]  # these, if empty
        read_end, write_end = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the worker: never returns
            os.close(read_end)
            _work(path, self.rates, folder, write_end)
        os.close(write_end)
        self._pipe = os.fdopen(read_end, "rb")

    def _collect(self) -> dict[str, Any] | None:
        """The worker's report (None if it failed), once it has ended."""
        try:
            report = self._pipe.read()
        finally:
            self._pipe.close()
            os.waitpid(self.pid, 0)
            self.pid = 0
        return json.loads(report) if report else None

    def take(self, track: Path, rates: Sequence[int], channels: int) -> Any:
        """The `PreparedInput` of `track` if the worker decoded it as asked, else None."""
        report = self._collect()
        try:
            stat = track.stat()
        except OSError:
            return None
        if (report is None or not report["frames"] or channels != GUESSED_CHANNELS
                or sorted(set(rates)) != self.rates
                or (os.path.realpath(track), stat.st_size, stat.st_mtime_ns) != self.key):
            return None  # fmt: skip
        from stemsplit.engine.pipeline import PreparedInput  # torch is loaded by now

        sources = {rate: _adopt(rate, **spool) for rate, spool in
                   zip(self.rates, report["spools"])}  # fmt: skip
        for name, level, message in report["records"]:  # as the usual decode says them
            logging.getLogger(name).log(level, "%s", message)
        log.debug("%s: decoded during start-up", track)
        return PreparedInput(self.info, sources, report["frames"])

    def discard(self) -> None:
        """Stop the worker (if it still runs) and delete what nobody took."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._collect()
        shutil.rmtree(self.folder, ignore_errors=True)
        for folder in self.created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a failed run leaves no `separated/`


def _work(path: Path, rates: Sequence[int], folder: Path, pipe: int) -> None:
    """The worker: decode, then report the spool files, frames and log lines as JSON."""
    code = 1
    spools: list[dict[str, Any]] = []
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # only the CPU the run leaves idle
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)  # `-o -`: the reader sees EOF when the run closes stdout
        records: list[tuple[str, int, str]] = []
        root = logging.getLogger("stemsplit")
        root.handlers[:] = [_Recorder(records)]
        from stemsplit.audio.reader import read_blocks
        from stemsplit.engine.source import SpoolSource

        decoded: list[int] = []
        for rate in rates:
            source = SpoolSource(read_blocks(path, samplerate=rate, channels=GUESSED_CHANNELS,
                                             on_decoded=decoded.append), rate, folder)  # fmt: skip
            spools.append({"path": str(source.path), "channels": source.channels,
                           "length": source.length, "mean": source.mean, "std": source.std})
        report = {"spools": spools, "frames": decoded[0], "records": records}
        with os.fdopen(pipe, "wb") as out:
            out.write(json.dumps(report).encode())
        code = 0
    except BaseException:  # the run decodes again, and says what is wrong
        for spool in spools:
            with contextlib.suppress(OSError):
                os.unlink(spool["path"])
    finally:
        os._exit(code)  # no atexit, no flushing the parent's buffers


class _Recorder(logging.Handler):
    def __init__(self, records: list[tuple[str, int, str]]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def _adopt(rate: int, path: str, channels: int, length: int, mean: float, std: float) -> Any:
    """The worker's spool file as the `SpoolSource` its decode built there (the same
    fields; JSON keeps floats exact)."""
    from stemsplit.engine.source import SpoolSource, TrackSource

    source = SpoolSource.__new__(SpoolSource)
    TrackSource.__init__(source, channels, length, rate)
    source.path, source.mean, source.std = Path(path), mean, std
    source._file = open(path, "rb")  # closed by the source's close()
    return source


_current: EarlyDecode | None = None


def take(track: Path, rates: Sequence[int], channels: int) -> Any:
    """The input decoded during start-up, as `prepare_input(track, rates, ..., channels)`
    would return it, or None (nothing was started, or not for this)."""
    global _current
    early, _current = _current, None
    if early is None:
        return None
    prepared = early.take(Path(track), rates, channels)
    if prepared is None:
        early.discard()
    else:
        _current = early  # its folder goes when the run ends
    return prepared


def pending() -> bool:
    """Whether an input decoded (or decoding) during start-up waits to be taken."""
    return _current is not None and _current.pid != 0


@contextlib.contextmanager
def early_input(inputs: Sequence[str], request: Request) -> Iterator[None]:
    """Decode the run's one local input file beside the run (see the module's
    docstring); what nobody took is deleted when the block ends."""
    global _current
    _current = _start(inputs, request)  # forks: before any thread starts
    hashing = _hash_checkpoints(request.models)
    try:
        yield
    finally:
        early, _current = _current, None
        if early is not None:
            early.discard()
        if hashing is not None:
            hashing.join()


def _start(inputs: Sequence[str], request: Request) -> EarlyDecode | None:
    """An `EarlyDecode` for runs where it will most likely be taken, else None."""
    if (not enabled() or sys.platform != "linux" or len(inputs) != 1
            or request.recipe or request.output.out_url
            or request.batch.executor != "local" or "://" in inputs[0]):
        return None  # fmt: skip
    path = Path(inputs[0]).expanduser()
    try:
        if not path.is_file():
            return None
        rates = _guess_rates(request.models)
        from stemsplit.audio.reader import probe

        info = probe(path)  # here: a warning it gives is said once, as before
    except Exception:  # e.g. an unknown model or a bad file: the run itself says so
        log.debug("no start-up decode", exc_info=True)
        return None
    if request.output.stdout:  # as the pipe's own spool: in the temporary folder
        folder = Path(tempfile.gettempdir()) / f"stemsplit-startup-{os.getpid()}"
    else:  # the batch's spool folder: a killed run's is swept by the next run
        from stemsplit.atomic import SPOOL_PREFIX

        folder = Path(request.output.out) / f"{SPOOL_PREFIX}{os.getpid()}"
    return EarlyDecode(path, info, rates, folder)


def _guess_rates(models: Any) -> list[int]:
    """The sample rates of the run's models: their zoo cards', a guess for local files."""
    from stemsplit.zoo.catalog import expand_models, get_card

    rates = []
    names = [spec.name if spec.name is not None else spec for spec in models.models]
    for item in expand_models(names, models.weights, models.ensemble).names:
        if isinstance(item, str):
            rates.append(get_card(item).samplerate)
        elif getattr(item, "checkpoint", None) is not None:
            rates.append(GUESSED_RATE)
        else:
            raise ValueError("a ready bundle: nothing to guess from")
    return rates


def _hash_checkpoints(models: Any) -> threading.Thread | None:
    """Hash the local checkpoint files in a thread (their labels need it; torch.load
    then finds them in the page cache)."""
    files = [spec.checkpoint for spec in models.models if spec.checkpoint is not None]
    if not files or not enabled():
        return None
    from stemsplit.zoo.local import file_sha256

    def hash_all() -> None:
        for path in files:
            with contextlib.suppress(OSError):
                file_sha256(path)

    thread = threading.Thread(target=hash_all, name="stemsplit-hash", daemon=True)
    thread.start()
    return thread


def enabled() -> bool:
    """Whether the overlap is asked for (`STEMSPLIT_STARTUP_OVERLAP=1`)."""
    return os.environ.get(ENV) == "1"
