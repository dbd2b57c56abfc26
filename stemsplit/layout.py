"""Where each track's stems go: OUT/<model>/<template>, the one place paths are built,
and the clash check that runs over a whole batch before any work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stemsplit.errors import UsageError
from stemsplit.options import OutputOptions, check_template, per_track_folder

if TYPE_CHECKING:
    from stemsplit.plan import RunPlan

__all__ = ["check_clashes", "output_paths", "outputs_for", "per_track_folder", "record_path", "track_name"]

METADATA_NAME = "stemsplit.json"


def track_name(track: Path) -> tuple[str, str]:
    """`song.wav` -> ("song", "wav"), as demucs names its output folders."""
    if "." in track.name:
        name, ext = track.name.rsplit(".", 1)
        return name, ext
    return track.name, ""


def output_paths(
    track: Path, label: str, stems: Sequence[str], output: OutputOptions, reldir: str = "",
    number: int = 1,
) -> dict[str, Path]:
    """OUT/<label>/<template> for each stem of `track` (the batch's `number`th); with
    `--naming`, OUT/<template> (the peers' templates place the model name themselves).
    A stem file (`-f stem.mp4`) is one path shared by every stem."""
    check_template(output.filename, one_file=output.stem_file)
    name, trackext = track_name(track)
    root = Path(output.out) if output.naming else Path(output.out) / label
    return {
        stem: root / output.filename.format(
            track=name, stem=stem, Stem=stem_title(stem), ext=output.format, model=label,
            trackext=trackext, reldir=reldir, n=number,
        )
        for stem in stems
    }  # fmt: skip


def stem_title(stem: str) -> str:
    """A stem as audio-separator and UVR name it in files: "Vocals", "No Vocals"."""
    return stem.replace("_", " ").title()


def record_path(track: Path, outputs: Mapping[str, Path], template: str) -> Path:
    """Where a track's `stemsplit.json` lives: its own folder's, or a per-track sidecar
    (`.<track>.stemsplit.json`) where tracks share a folder."""
    folder = next(iter(outputs.values())).parent
    if per_track_folder(template):
        return folder / METADATA_NAME
    return folder / f".{track_name(track)[0]}.{METADATA_NAME}"


def check_clashes(outputs: Mapping[Path, Mapping[str, Path]]) -> None:
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
                    "use --filename with {reldir} or {trackext}, or separate output folders"
                )
            owners[key] = track


def outputs_for(plan: RunPlan, track: Path, reldir: str = "", number: int = 1
                ) -> dict[str, Path]:  # fmt: skip
    """The stem files `track` (the batch's `number`th) will produce (OUT/<label>/<template>)."""
    return output_paths(track, plan.label, plan.stems.written, plan.output, reldir, number)
