"""Many inputs: expansion, output paths, skip/resume, per-track errors, summary.

A batch never stops at a bad file: each track ends as done, skipped or failed,
with a one-line reason. Completion is known from the atomic renames of the
writers: a stem file that exists under its final name is complete.
"""

from __future__ import annotations

import glob
import logging
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsplit.errors import InputError, StemsplitError, UsageError

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

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            for child in sorted(path.glob(pattern)):
                if child.is_file() and child.suffix.lower().lstrip(".") in extensions:
                    if not child.name.startswith("."):
                        add(child)
        elif not path.exists() and glob.has_magic(str(item)):
            for match in sorted(glob.glob(str(item), recursive=recursive)):
                match_path = Path(match)
                if match_path.is_file():
                    add(match_path)
        else:
            add(path)
    if not tracks:
        raise InputError("no audio files found in the given inputs")
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


def _check_clashes(separator, tracks: Sequence[Path]) -> None:
    owners: dict[Path, Path] = {}
    for track in tracks:
        for path in separator.outputs_for(track).values():
            key = path.resolve()
            if track.exists() and key == track.resolve():
                raise UsageError(f"output {path} would overwrite its own input")
            if key in owners and owners[key] != track:
                raise UsageError(
                    f"{owners[key]} and {track} would both write {path}: "
                    "use --filename with {trackext} or separate output folders"
                )
            owners[key] = track


def run_batch(
    separator,
    tracks: Sequence[Path],
    skip_existing: bool = True,
    progress: Callable | None = None,
) -> list[TrackResult]:
    """Separate each track in turn; failures are recorded, never raised."""
    from stemsplit.api import Progress

    _check_clashes(separator, tracks)
    results: list[TrackResult] = []
    for index, track in enumerate(tracks):
        outputs = separator.outputs_for(track)
        if skip_existing and all(p.is_file() for p in outputs.values()):
            results.append(TrackResult(track, "skipped", stems=outputs))
            continue
        started = time.perf_counter()

        def on_progress(fraction: float, index=index, track=track) -> None:
            if progress:
                progress(Progress(index, len(tracks), track, fraction))

        try:
            stems, audio_seconds, clipped = separator.separate_track(track, on_progress)
        except StemsplitError as err:
            if err.exit_code > 2:  # interrupted: stop the batch
                raise
            log.debug("track failed", exc_info=True)
            results.append(TrackResult(track, "failed", error=str(err),
                                       seconds=time.perf_counter() - started))
            continue
        except (OSError, ValueError, RuntimeError) as err:
            log.debug("track failed", exc_info=True)
            results.append(TrackResult(track, "failed", error=f"{track}: {err}",
                                       seconds=time.perf_counter() - started))
            continue
        results.append(
            TrackResult(track, "done", stems=stems, seconds=time.perf_counter() - started,
                        audio_seconds=audio_seconds, clipped_samples=clipped)
        )
        if progress:
            progress(Progress(index, len(tracks), track, 1.0, "done"))
    return results
