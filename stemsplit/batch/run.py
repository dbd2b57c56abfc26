"""The run loop: every track ends as done, skipped or failed, with a one-line reason.

Before any model loads: output paths for the whole batch (clashes refused), stale
temporary files of killed runs removed, cheap input checks, and the skip decision
against each track's record. Models load only if a track is left to separate.
A file under its final name is always complete (the writers rename finished files).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.batch.inputs import Track, check_input
from stemsplit.batch.resume import read_record, redo_reason, write_record
from stemsplit.errors import StemsplitError, describe_os_error
from stemsplit.layout import check_clashes, outputs_for, per_track_folder, record_path
from stemsplit.options import Progress, TrackResult

if TYPE_CHECKING:
    from stemsplit.engine.multi import TrackBatcher
    from stemsplit.plan import RunPlan
    from stemsplit.separator import Separator

log = logging.getLogger(__name__)


def run_batch(
    separator: Separator,
    tracks: Sequence[Track],
    skip_existing: bool = True,
    progress: Callable[[Progress], None] | None = None,
    jobs: int = 1,
) -> list[TrackResult]:
    """Separate each track in turn; failures are recorded, never raised.

    With `jobs` >= 1, `jobs` threads decode the next tracks while the model runs and
    every stem is encoded in its own thread; `jobs=0` does everything in this thread.
    """
    from stemsplit.atomic import SPOOL_PREFIX
    from stemsplit.batch.io import BackgroundWriter, Prefetcher, remove_stale

    plan = separator.plan
    outputs = {t.path: outputs_for(plan, t.path, t.reldir, t.number_in(position))
               for position, t in enumerate(tracks, 1)}  # fmt: skip
    check_clashes(outputs)
    out_dir = Path(plan.output.out)
    remove_stale([p for paths in outputs.values() for p in paths.values()], out_dir)
    results: dict[int, TrackResult] = {}
    todo: list[int] = []
    for index, track in enumerate(tracks):
        try:
            check_input(track.path)
        except StemsplitError as err:
            log.debug("input check failed", exc_info=True)  # the traceback with --debug
            results[index] = TrackResult(track.path, "failed", error=str(err))
            continue
        if skip_existing:
            reason = redo_reason(outputs[track.path], _record(plan, track.path, outputs[track.path]),
                                 separator.describe)  # fmt: skip
            if reason is None:
                results[index] = TrackResult(track.path, "skipped", stems=outputs[track.path])
                continue
            if reason != "not separated yet":
                log.warning("redo %s: %s", track.path.name, reason)
        todo.append(index)
    if todo:  # fetch and load the models here, not in a decode-ahead thread
        label = Path(plan.label)
        if progress:
            progress(Progress(-1, len(tracks), label, 0.0, "loading"))
        separator.bundles  # noqa: B018
        if progress:
            progress(Progress(-1, len(tracks), label, 1.0, "loaded"))
    spool_dir = out_dir / f"{SPOOL_PREFIX}{os.getpid()}"

    def prepare(track: Path) -> Any:
        return separator.prepare(track, spool_dir)

    writer_factory = BackgroundWriter if jobs >= 1 else None
    batcher = separator.track_batcher() if len(todo) > 1 else None
    try:
        with Prefetcher(prepare, [tracks[i].path for i in todo], jobs) as prefetch:
            if batcher is not None:  # several tracks in flight, their chunks pooled
                from stemsplit.batch.pooled import run_pooled, serialized

                report = serialized(progress)

                def take(position: int) -> Any:
                    return prefetch.get(position) if jobs >= 1 else prepare(tracks[todo[position]].path)

                def run_one(position: int, prepared: Callable[[], Any]) -> TrackResult:
                    index, path = todo[position], tracks[todo[position]].path
                    return _one_track(separator, path, outputs[path], index, len(tracks),
                                      report, prepared, writer_factory,
                                      spool_dir, batcher)  # fmt: skip

                results.update(zip(todo, run_pooled(batcher, len(todo), take, run_one)))
            else:
                for position, index in enumerate(todo):
                    path = tracks[index].path

                    def prepared(position: int = position) -> Any:
                        return prefetch.get(position) if jobs >= 1 else None

                    results[index] = _one_track(
                        separator, path, outputs[path], index, len(tracks), progress,
                        prepared, writer_factory, spool_dir,
                    )  # fmt: skip
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    ordered = [results[i] for i in range(len(tracks))]
    for result in ordered:
        if result.status == "skipped":
            _finish_safely(separator, result)
    return ordered


def _one_track(
    separator: Separator,
    track: Path,
    outputs: dict[str, Path],
    index: int,
    count: int,
    progress: Callable[[Progress], None] | None,
    prepared: Callable[[], Any],
    writer_factory: Any,
    spool_dir: Path,
    batcher: TrackBatcher | None = None,
) -> TrackResult:
    started = time.perf_counter()
    created = _missing_folders(outputs)
    before = {path: _stamp(path) for path in outputs.values()}

    def on_progress(fraction: float) -> None:
        if progress:
            progress(Progress(index, count, track, fraction))

    try:
        outcome = separator.separate_track(
            track, outputs, on_progress, prepared=prepared(), writer_factory=writer_factory,
            spool_dir=spool_dir, batcher=batcher,
        )  # fmt: skip
    except BaseException as err:
        if isinstance(err, (StemsplitError, OSError, ValueError, RuntimeError)):
            _remove_written(before)  # a failed track leaves no stem of this attempt
        _remove_empty(created)
        if not isinstance(err, (StemsplitError, OSError, ValueError, RuntimeError)):
            raise
        if isinstance(err, StemsplitError) and err.exit_code > 2:  # interrupted: stop
            raise
        log.debug("track failed", exc_info=True)
        if isinstance(err, StemsplitError):
            message = str(err)
        else:
            reason = describe_os_error(err) if isinstance(err, OSError) else err
            message = f"{track}: {reason}"
        return TrackResult(track, "failed", error=message, seconds=time.perf_counter() - started)
    result = TrackResult(
        track, "done", stems=outcome.stems, seconds=time.perf_counter() - started,
        audio_seconds=outcome.audio_seconds, clipped_samples=outcome.clipped_samples,
    )  # fmt: skip
    _finish_safely(separator, result)
    if progress:
        progress(Progress(index, count, track, 1.0, "done"))
    return result


def _missing_folders(outputs: dict[str, Path]) -> list[Path]:
    """The output folders that do not exist yet, deepest first (removed if left empty)."""
    missing = []
    for path in outputs.values():
        folder = path.parent
        while not folder.exists() and folder not in missing:
            missing.append(folder)
            folder = folder.parent
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file, None when absent: a rename or a rewrite changes it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _remove_written(before: dict[Path, tuple[int, int] | None]) -> None:
    """Remove the stems a failed attempt finished (those not as they were before it):
    stems are renamed one by one as they finish, so a later stem's failure (a full
    disk) would leave the first ones beside an incomplete set (docs/reliability.md)."""
    for path, stamp in before.items():
        if _stamp(path) not in (None, stamp):
            try:
                path.unlink()
            except OSError:
                log.debug("could not remove %s", path, exc_info=True)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()  # only if empty
        except OSError:
            pass


def _record(plan: RunPlan, track: Path, outputs: dict[str, Path]) -> Path:
    return record_path(track, outputs, plan.output.filename)


def _finish_track(separator: Separator, result: TrackResult) -> None:
    """The record (and the report) of a track that is done; the report of a skipped one."""
    from stemsplit.report import REPORT_NAME

    output = separator.plan.output
    if not result.stems:
        return
    if result.status == "done":
        record = _record(separator.plan, result.input, result.stems)
        _remove_dropped(record, result.stems)
        write_record(record, {
            "input": str(result.input.absolute()),
            **separator.describe(),
            "stems": {stem: path.name for stem, path in result.stems.items()},
            "duration": round(result.audio_seconds, 3),
            "elapsed_seconds": round(result.seconds, 3),
            "speed": result.speed and round(result.speed, 3),
            "clipped_samples": result.clipped_samples,
        })  # fmt: skip
    if output.report and per_track_folder(output.filename):
        folder = next(iter(result.stems.values())).parent
        report = folder / REPORT_NAME
        if result.status == "done" or not report.is_file():
            report = _track_report(result.input, result.stems, output.reference)
        result.report = report


def _remove_dropped(record: Path, stems: dict[str, Path]) -> None:
    """A redo owns its track: the files its previous run recorded and this run no longer
    writes (another -f, fewer stems) go, so the folder holds one set of stems; files the
    record does not name (a user's own) stay."""
    from stemsplit.audio.formats import AUDIO_EXTENSIONS

    previous = read_record(record)
    names = previous.get("stems") if previous else None
    if not isinstance(names, dict):
        return
    written = {path.absolute() for path in stems.values()}
    for name in map(str, names.values()):
        path = record.parent / name
        if (Path(name).name != name or path.absolute() in written or not path.is_file()
                or path.suffix.lower().lstrip(".") not in AUDIO_EXTENSIONS):  # fmt: skip
            continue
        path.unlink()
        log.info("removed %s: the previous run wrote it, this one does not", path)


def _track_report(track: Path, stems: dict[str, Path], reference: Path | None) -> Path:
    """report.html beside `stems`: the input as the mixture, SDR if references exist."""
    from stemsplit.layout import track_name
    from stemsplit.report import find_stems, read_metadata, write_report

    folder = next(iter(stems.values())).parent
    references = None
    if reference is not None:
        own = Path(reference) / track_name(track)[0]
        references, _ = find_stems(own if own.is_dir() else Path(reference))
        if not references:
            log.warning("no reference stems for %s in %s: no SDR", track.name, reference)
    return write_report(folder, stems, mixture=track, metadata=read_metadata(folder),
                        references=references)


def _finish_safely(separator: Separator, result: TrackResult) -> None:
    """A record that cannot be written is a warning; a report asked for with --report
    that cannot be made fails the track (its stems stay): never exit 0 without it."""
    try:
        _finish_track(separator, result)
    except (StemsplitError, OSError, ValueError) as err:
        if separator.plan.output.report:
            result.status, result.error = "failed", f"{result.input}: no report: {err}"
        else:
            log.warning("%s: could not write metadata: %s", result.input, err)


def write_batch_index(results: Sequence[TrackResult]) -> Path | None:
    """index.html linking every track's report (and listing the failed tracks), in the
    folder that holds the track folders."""
    from stemsplit.report import write_index

    reports = [r.report for r in results if r.report is not None]
    if not reports:
        return None
    root = Path(os.path.commonpath([str(r.parent.parent) for r in reports]))
    failed = [(r.input, r.error or "") for r in results if r.status == "failed"]
    return write_index(root, reports, failed=failed)
