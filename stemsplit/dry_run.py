"""`stemsplit --dry-run`: what a run would do, and what it would cost, touching nothing.

The same steps as a run up to the first decode: inputs expanded (and sharded), the plan
made (nothing downloaded; a local checkpoint is read), each track's outputs laid out and
the skip-or-redo decision taken from its `stemsplit.json` as `batch.run` takes it,
each input's length read from its header. The cost is measured, never guessed: each
model's figures from `stemsplit models bench` (`bench.json` in the model cache, for
this device and precision where measured, else the fastest kept), scaled by the minutes
of audio to separate, plus the load; a model never measured leaves the estimate unknown
and says which command measures it. No folder is made, no file written or removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stemsplit.request import Request
    from stemsplit.separator import Separator


@dataclass(frozen=True)
class PlannedTrack:
    """One input: `action` is "separate" or "skip", `reason` why (redo reasons as a run
    logs them), `seconds` its length (None when the header does not say)."""

    input: str
    action: str
    reason: str
    seconds: float | None
    stems: dict[str, str]


@dataclass
class DryRun:
    """The tracks, the models, and the estimate (None with `unknown` saying why)."""

    models: list[str]
    device: str
    precision: str
    tracks: list[PlannedTrack] = field(default_factory=list)
    estimated_seconds: float | None = None
    peak_rss_mb: float | None = None
    measured: list[dict[str, Any]] = field(default_factory=list)
    unknown: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dry_run(inputs: list[str | Path], request: Request, separator: Separator) -> DryRun:
    """The plan of a run of `request` over `inputs` (`separator` from `api.plan_run`)."""
    from stemsplit.audio.reader import probe
    from stemsplit.batch.inputs import expand_inputs, shard
    from stemsplit.batch.resume import redo_reason
    from stemsplit.engine.runner import resolve_device
    from stemsplit.errors import StemsplitError
    from stemsplit.layout import outputs_for, record_path

    batch = request.batch
    engine = request.engine
    plan = separator.plan
    tracks = expand_inputs(inputs, recursive=batch.recursive)
    if batch.shard_of is not None:
        tracks = shard(tracks, *batch.shard_of)
    report = DryRun([m.name for m in plan.models], resolve_device(engine.device),
                    engine.precision)  # fmt: skip
    for position, track in enumerate(tracks, 1):
        outputs = outputs_for(plan, track.path, track.reldir, track.number_in(position))
        reason: str | None = "--overwrite"
        if batch.skip_existing:
            record = record_path(track.path, outputs, plan.output.filename)
            reason = redo_reason(outputs, record, separator.describe)
        try:
            seconds = probe(track.path).duration
        except StemsplitError as err:
            reason, seconds = f"fails: {err}", None
        report.tracks.append(PlannedTrack(
            str(track.path), "skip" if reason is None else "separate",
            reason or "done with the same models and settings", seconds,
            {stem: str(path) for stem, path in outputs.items()},
        ))  # fmt: skip
    _estimate(report, request.models.model_dir)
    return report


def _estimate(report: DryRun, model_dir: Path | None) -> None:
    """Seconds and peak memory from each model's bench figures (see the module doc)."""
    from stemsplit.bench import for_model
    from stemsplit.zoo.fetch import cache_dir

    todo = [t for t in report.tracks if t.action == "separate" and not t.reason.startswith("fails")]
    if any(t.seconds is None for t in todo):
        report.unknown = "an input's header gives no length"
        return
    minutes = sum(t.seconds or 0.0 for t in todo) / 60
    total, peak = 0.0, 0.0
    for name in dict.fromkeys(report.models):
        entries = for_model(cache_dir(model_dir), name)
        exact = [e for e in entries
                 if (e["device"], e["precision"]) == (report.device, report.precision)]  # fmt: skip
        if not entries:
            report.unknown = f"{name} was never measured here: run `stemsplit models bench {name}`"
            return
        entry = (exact or entries)[0]
        report.measured.append(entry)
        total += entry["seconds_per_minute"] * minutes + (entry["load_seconds"] if todo else 0)
        peak = max(peak, entry["peak_rss_mb"])
    report.estimated_seconds, report.peak_rss_mb = total, peak
