"""Tracks run whole, one call each, where a batch is more than local files in and out:
on Ray workers (`batch.ray`) and to or from object storage (`batch.storage`).

The caller decides skip or redo once for the whole batch (`triage`), before any worker
starts, so a finished run starts nothing and writes nothing. A worker then runs each
track it is given from scratch (`run_whole`): it separates it with the run's
`Separator` (the driver's `RunPlan`, never planned again; an object input is decoded
from its stream, not copied) into its staging folder, and uploads the files when `-o`
is a bucket.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stemsplit.batch.inputs import Track
from stemsplit.batch.resume import redo_reason
from stemsplit.batch.storage import Bucket, ObjectPath
from stemsplit.layout import check_clashes, outputs_for, record_path
from stemsplit.options import BatchOptions, ModelOptions, Progress, TrackResult
from stemsplit.plan import RunPlan
from stemsplit.separator import Separator

log = logging.getLogger(__name__)


def triage(
    separator: Separator, tracks: Sequence[Track], skip_existing: bool, bucket: Bucket | None
) -> tuple[dict[int, TrackResult], list[int]]:
    """The skipped tracks' results, and the indexes of the tracks left to run. With a
    `bucket`, its records and stems decide (the plan's folder is its staging layout)."""
    plan = separator.plan
    outputs = {t.path: outputs_for(plan, t.path, t.reldir, t.number_in(position))
               for position, t in enumerate(tracks, 1)}  # fmt: skip
    check_clashes(outputs)
    results: dict[int, TrackResult] = {}
    todo: list[int] = []
    for index, track in enumerate(tracks):
        paths = outputs[track.path]
        if skip_existing:
            record = record_path(track.path, paths, plan.output.filename)
            if bucket is None:
                reason = redo_reason(paths, record, separator.describe)
            else:
                reason = redo_reason(paths, record, separator.describe, bucket.is_file,
                                     bucket.read_record)  # fmt: skip
            if reason is None:
                stems = paths if bucket is None else {s: _as_path(bucket.url_of(p))
                                                      for s, p in paths.items()}  # fmt: skip
                results[index] = TrackResult(track.path, "skipped", stems=stems)
                continue
            if reason != "not separated yet":
                log.warning("redo %s: %s", track.path.name, reason)
        todo.append(index)
    return results, todo


def run_here(
    separator: Separator,
    tracks: Sequence[Track],
    batch: BatchOptions,
    models: ModelOptions,
    bucket_url: str | None,
    progress: Callable[[Progress], None] | None = None,
) -> list[TrackResult]:
    """The local executor over object storage: whole tracks, one after another."""
    bucket = Bucket(bucket_url, Path(separator.plan.output.out)) if bucket_url else None
    results, todo = triage(separator, tracks, batch.skip_existing, bucket)
    staging = scratch_folder("staging")
    try:
        if bucket is not None:  # the same models, writing to this run's staging folder
            separator = Separator(staged(separator.plan, staging), model_dir=models.model_dir,
                                  offline=models.offline)  # fmt: skip
            bucket = Bucket(bucket.url, staging)
        for index in todo:
            path = tracks[index].path

            def on_progress(fraction: float, index: int = index, path: Path = path) -> None:
                if progress is not None:
                    progress(Progress(index, len(tracks), path, fraction))

            results[index] = run_whole(separator, tracks[index], bucket, batch.jobs, on_progress)
            if progress is not None:
                progress(Progress(index, len(tracks), path, 1.0, results[index].status))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [results[i] for i in range(len(tracks))]


def scratch_folder(kind: str) -> Path:
    """A new temporary folder named after this process; those of dead processes (a
    worker killed mid-track leaves its staged stems and decode spools) go first."""
    from stemsplit.batch.io import pid_alive

    for old in Path(tempfile.gettempdir()).glob("stemsplit-*-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"stemsplit-{kind}-{os.getpid()}-"))


def staged(plan: RunPlan, staging: Path) -> RunPlan:
    """The same plan writing under `staging` (a bucket's local mirror on this machine)."""
    return replace(plan, output=replace(plan.output, out=staging))


class PlannedSeparator(Separator):
    """A Separator for another machine's plan: its records name the model files the
    planning machine hashed (a worker need not hold the checkpoint files to say so)."""

    def __init__(self, plan: RunPlan, identity: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(plan, **kwargs)
        self.identity = identity

    def model_identity(self) -> list[dict[str, Any]]:
        return self.identity


def run_whole(
    separator: Separator,
    track: Track,
    bucket: Bucket | None,
    jobs: int = 1,
    progress: Callable[[float], None] | None = None,
) -> TrackResult:
    """Separate `track` from scratch (no skip check) and upload its files."""
    from stemsplit.batch.run import run_batch

    def on_event(event: Progress) -> None:
        if progress is not None and event.index >= 0:
            progress(event.fraction)

    result = run_batch(separator, [track], skip_existing=False, jobs=jobs,
                       progress=on_event)[0]  # fmt: skip
    return _published(separator.plan, track, result, bucket)


def _published(plan: RunPlan, track: Track, result: TrackResult, bucket: Bucket | None
               ) -> TrackResult:  # fmt: skip
    """The result as the caller names it: stems in the bucket, the record last."""
    if result.status != "done":
        if bucket is not None:
            bucket.clear()
        return result
    if bucket is None:
        return result
    record = record_path(track.path, result.stems, plan.output.filename)
    bucket.upload([record] if record.is_file() else [])
    result.stems = {stem: _as_path(bucket.url_of(path)) for stem, path in result.stems.items()}
    if result.report is not None:
        result.report = _as_path(bucket.url_of(result.report))
    return result


def _as_path(path: ObjectPath) -> Path:
    """Results hold paths; an object's has a Path's names and prints as its URL."""
    return path  # type: ignore[return-value]
