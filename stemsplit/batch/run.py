"""Many inputs: expansion, output paths, skip/resume, per-track errors, summary.

A batch never stops at a bad file: each track ends as done, skipped or failed,
with a one-line reason. Completion is known from the atomic renames of the
writers: a stem file that exists under its final name is complete.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsplit.errors import InputError, StemsplitError, UsageError, describe_os_error

log = logging.getLogger(__name__)

TEMPLATE_FIELDS = {"track", "stem", "ext", "model", "trackext"}


@dataclass
class TrackResult:
    """How one track ended."""

    input: Path
    status: str  # "done" | "skipped" | "failed"
    stems: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    audio_seconds: float = 0.0
    clipped_samples: dict[str, int] = field(default_factory=dict)
    report: Path | None = None

    @property
    def realtime_factor(self) -> float | None:
        """Audio seconds per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "status": self.status,
            "stems": {k: str(v) for k, v in self.stems.items()},
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "audio_seconds": round(self.audio_seconds, 3),
            "realtime_factor": self.realtime_factor and round(self.realtime_factor, 3),
            "clipped_samples": self.clipped_samples,
            "report": str(self.report) if self.report else None,
        }


def _audio_extensions() -> set[str]:
    from stemsplit.audio.formats import AUDIO_EXTENSIONS

    return {e.lower().lstrip(".") for e in AUDIO_EXTENSIONS}


def expand_inputs(inputs: Sequence[str | Path], recursive: bool = False) -> list[Path]:
    """Files as given; folders (recursively with `recursive`) and globs by extension.

    Each track once, in the order given (folders sorted). A path that does not
    exist is kept: it fails on its own, without stopping the others.
    """
    extensions = _audio_extensions()
    seen: set[Path] = set()
    tracks: list[Path] = []

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            tracks.append(path)

    barren: list[str] = []  # folders and globs that gave nothing
    for item in inputs:
        path = Path(item)
        before = len(tracks)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if child.is_file() and child.suffix.lower().lstrip(".") in extensions:
                    if not child.name.startswith("."):
                        add(child)
            if len(tracks) == before:
                barren.append(f"{path}: no audio files in this folder"
                              + ("" if recursive else " (add -r to search its subfolders)"))
        elif not path.exists() and glob.has_magic(str(item)):
            for match in sorted(glob.glob(str(item), recursive=recursive)):
                match_path = Path(match)
                if match_path.is_file():
                    add(match_path)
            if len(tracks) == before:
                barren.append(f"{item}: the pattern matches no files")
        else:
            add(path)
    if not tracks:
        raise InputError("no audio files found in the given inputs")
    for message in barren:  # the others still run; say what was left out
        log.warning("%s", message)
    if not any(t.exists() for t in tracks):
        missing = ", ".join(str(t) for t in tracks[:3])
        raise InputError(f"no such file: {missing}")
    return tracks


def track_name(track: Path) -> tuple[str, str]:
    """`song.wav` -> ("song", "wav"), as demucs names its output folders."""
    if "." in track.name:
        name, ext = track.name.rsplit(".", 1)
        return name, ext
    return track.name, ""


def check_template(template: str) -> None:
    """Unknown `{fields}` and templates without `{stem}` are usage errors."""
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise UsageError(
            f"--filename: unknown field(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    if "stem" not in fields:
        raise UsageError("--filename must contain {stem}, or every stem would overwrite the last")


def output_paths(track: Path, model: str, stems: Sequence[str], output) -> dict[str, Path]:
    """OUT/<model>/<template> for each stem: the one place output paths are built."""
    check_template(output.filename)
    name, trackext = track_name(track)
    ext = output.format
    return {
        stem: Path(output.out)
        / model
        / output.filename.format(track=name, stem=stem, ext=ext, model=model, trackext=trackext)
        for stem in stems
    }


def per_track_folder(template: str) -> bool:
    """Whether `--filename` gives each track its own folder (metadata and reports go there)."""
    folder = Path(template).parent.as_posix()
    return any(f == "track" for _, f, _, _ in string.Formatter().parse(folder))


def check_clashes(outputs: dict[Path, dict[str, Path]]) -> None:
    """Two inputs writing the same file (or over an input) is an error before any work."""
    owners: dict[Path, Path] = {}
    inputs = {t.resolve(): t for t in outputs if t.exists()}
    for track, paths in outputs.items():
        for path in paths.values():
            key = path.resolve()
            if key in inputs:
                raise UsageError(f"output {path} would overwrite the input {inputs[key]}")
            if key in owners and owners[key] != track:
                raise UsageError(
                    f"{owners[key]} and {track} would both write {path}: "
                    "use --filename with {trackext} or separate output folders"
                )
            owners[key] = track


def _is_complete(outputs: dict[str, Path]) -> bool:
    """All stems exist under their final names: the writers rename only finished files."""
    return all(p.is_file() for p in outputs.values())


def write_metadata(folder: Path, payload: dict[str, Any]) -> Path:
    """`stemsplit.json` beside the stems (what the report shows), written atomically."""
    from stemsplit.report import METADATA_NAME

    path = folder / METADATA_NAME
    temp = folder / f".{METADATA_NAME}.partial-{os.getpid()}"
    temp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temp, path)
    return path


def _track_report(track: Path, stems: dict[str, Path], reference: Path | None) -> Path:
    """report.html beside `stems`: the input as the mixture, SDR if references exist."""
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


def _finish_track(separator, result: TrackResult) -> None:
    """Metadata (and the report) of a track that is done; the report of a skipped one."""
    from stemsplit.report import REPORT_NAME

    output = separator.output
    if not result.stems or not per_track_folder(output.filename):
        return
    folder = next(iter(result.stems.values())).parent
    if result.status == "done":
        write_metadata(folder, {
            "input": str(result.input),
            **separator.describe(),
            "stems": {stem: path.name for stem, path in result.stems.items()},
            "duration": round(result.audio_seconds, 3),
            "elapsed_seconds": round(result.seconds, 3),
            "real_time_factor": result.realtime_factor and round(result.realtime_factor, 3),
            "clipped_samples": result.clipped_samples,
        })
    if getattr(output, "report", False):
        report = folder / REPORT_NAME
        if result.status == "done" or not report.is_file():
            report = _track_report(result.input, result.stems, getattr(output, "reference", None))
        result.report = report


def run_batch(
    separator,
    tracks: Sequence[Path],
    skip_existing: bool = True,
    progress: Callable | None = None,
    jobs: int = 1,
) -> list[TrackResult]:
    """Separate each track in turn; failures are recorded, never raised.

    With `jobs` >= 1, `jobs` threads decode the next tracks while the model runs and
    every stem is encoded in its own thread; `jobs=0` does everything in this thread.
    """
    from stemsplit.api import Progress
    from stemsplit.batch_io import SPOOL_PREFIX, BackgroundWriter, Prefetcher, remove_stale

    outputs = {track: separator.outputs_for(track) for track in tracks}
    check_clashes(outputs)
    out_dir = Path(separator.output.out)
    remove_stale([p for paths in outputs.values() for p in paths.values()], out_dir)
    results: dict[int, TrackResult] = {}
    todo: list[int] = []
    for index, track in enumerate(tracks):
        if skip_existing and _is_complete(outputs[track]):
            results[index] = TrackResult(track, "skipped", stems=outputs[track])
        else:
            todo.append(index)
    if todo:  # fetch and load the models here, not in a decode-ahead thread
        separator.bundles  # noqa: B018
    spool_dir = out_dir / f"{SPOOL_PREFIX}{os.getpid()}"

    def prepare(track: Path):
        return separator.prepare(track, spool_dir)

    writer_factory = BackgroundWriter if jobs >= 1 else None
    try:
        with Prefetcher(prepare, [tracks[i] for i in todo], jobs) as prefetch:
            for position, index in enumerate(todo):
                track = tracks[index]
                started = time.perf_counter()

                def on_progress(fraction: float, index=index, track=track) -> None:
                    if progress:
                        progress(Progress(index, len(tracks), track, fraction))

                try:
                    prepared = prefetch.get(position) if jobs >= 1 else None
                    stems, audio_seconds, clipped = separator.separate_track(
                        track, on_progress, prepared=prepared, writer_factory=writer_factory,
                        spool_dir=spool_dir,
                    )
                except StemsplitError as err:
                    if err.exit_code > 2:  # interrupted: stop the batch
                        raise
                    log.debug("track failed", exc_info=True)
                    results[index] = TrackResult(track, "failed", error=str(err),
                                                 seconds=time.perf_counter() - started)
                    continue
                except (OSError, ValueError, RuntimeError) as err:
                    log.debug("track failed", exc_info=True)
                    reason = describe_os_error(err) if isinstance(err, OSError) else err
                    results[index] = TrackResult(track, "failed", error=f"{track}: {reason}",
                                                 seconds=time.perf_counter() - started)
                    continue
                results[index] = TrackResult(
                    track, "done", stems=stems, seconds=time.perf_counter() - started,
                    audio_seconds=audio_seconds, clipped_samples=clipped,
                )
                _finish_safely(separator, results[index])
                if progress:
                    progress(Progress(index, len(tracks), track, 1.0, "done"))
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    ordered = [results[i] for i in range(len(tracks))]
    for result in ordered:
        if result.status == "skipped":
            _finish_safely(separator, result)
    return ordered


def _finish_safely(separator, result: TrackResult) -> None:
    """Metadata and reports are extras: a failure there is a warning, not a failed track."""
    try:
        _finish_track(separator, result)
    except (StemsplitError, OSError, ValueError) as err:
        log.warning("%s: could not write metadata/report: %s", result.input, err)


def write_batch_index(results: Sequence[TrackResult]) -> Path | None:
    """index.html linking every track's report, in the folder that holds the track folders."""
    from stemsplit.report import write_index

    reports = [r.report for r in results if r.report is not None]
    if not reports:
        return None
    root = Path(os.path.commonpath([str(r.parent.parent) for r in reports]))
    return write_index(root, reports)
