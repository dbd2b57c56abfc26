"""`stemsplit --dry-run`: render the plan `stemsplit.api.dry_run` returns (text or JSON)."""

from __future__ import annotations

from typing import Any

from stemsplit.cli import common


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def show_dry_run(inputs: list[Any], request: Any, json_output: bool) -> None:
    """Plan the run, print what it would do and cost; nothing is downloaded or written."""
    from rich.markup import escape

    from stemsplit.api import dry_run

    plan = dry_run(inputs, request)
    if json_output:
        common.print_json(plan.as_dict())
        return
    out = common.out_console
    out.print(f"dry run: {', '.join(plan.models)} on {plan.device} ({plan.precision}); "
              "nothing downloaded or written")  # fmt: skip
    todo = [t for t in plan.tracks if t.action == "separate"]
    audio = sum(t.seconds or 0.0 for t in todo)
    out.print(f"{len(plan.tracks)} track(s): {len(todo)} to separate ({_duration(audio)} of "
              f"audio), {len(plan.tracks) - len(todo)} skipped as done")  # fmt: skip
    for track in plan.tracks:
        out.print(f"  {track.action:<8} {escape(track.input)} ({_duration(track.seconds)}): "
                  f"{escape(track.reason)}", soft_wrap=True)  # fmt: skip
    if plan.estimated_seconds is None:
        out.print(f"estimate: unknown ({escape(plan.unknown or '')})", soft_wrap=True)
        return
    measured = ", ".join(f"{m['model']} {m['seconds_per_minute']:.1f} s/min on {m['device']} "
                         f"{m['precision']}" for m in plan.measured)  # fmt: skip
    out.print(f"estimate: {_duration(plan.estimated_seconds)} (min:s), peak memory "
              f"{plan.peak_rss_mb:.0f} MB (measured: {measured})", soft_wrap=True)  # fmt: skip
