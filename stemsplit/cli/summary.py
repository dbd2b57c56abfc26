"""The end-of-run table: done / skipped / failed, time and speed (x real time), or JSON."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from stemsplit.cli.common import err_console


def _totals(results, elapsed: float) -> dict[str, Any]:
    """Counts, wall time, and the batch's speed (audio seconds separated per second)."""
    audio = sum(r.audio_seconds for r in results if r.status == "done")
    return {
        **{s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")},
        "seconds": round(elapsed, 3),
        "audio_seconds": round(audio, 3),
        "speed": round(audio / elapsed, 3) if audio and elapsed > 0 else None,
    }


def _throughput(results, elapsed: float) -> dict[str, Any]:
    """Figures to plan a cluster with: audio hours done per node-hour and per worker-hour
    (wall time times the nodes or workers that ran), and the runs lost workers cost."""
    audio_hours = sum(r.audio_seconds for r in results if r.status == "done") / 3600
    wall_hours = elapsed / 3600
    workers, nodes = getattr(results, "workers", 1), getattr(results, "nodes", 1)

    def per(count: int) -> float | None:
        return round(audio_hours / (wall_hours * count), 3) if count and wall_hours else None

    return {
        "tracks": len(results), "audio_hours": round(audio_hours, 6),
        "wall_hours": round(wall_hours, 6), "workers": workers, "nodes": nodes,
        "audio_hours_per_node_hour": per(nodes), "audio_hours_per_worker_hour": per(workers),
        "retries": sum(r.retries for r in results),
    }  # fmt: skip


def _absolute(path: Path) -> str:
    """A local input as an absolute path, as the stems are given; stdin (`-`) and object
    storage (`s3://...`) as they are."""
    text = str(path)
    if text == "-" or path.is_absolute() or ":" in path.parts[0]:
        return text
    return os.path.abspath(text)


def summary_dict(results, elapsed: float, index: Path | None = None) -> dict[str, Any]:
    """What `--json` prints: the same summary as the table, one entry per track."""
    tracks = [{**r.as_dict(), "input": _absolute(r.input)} for r in results]
    return {"tracks": tracks, **_totals(results, elapsed),
            "throughput": _throughput(results, elapsed), "index": str(index) if index else None}


def _track_names(inputs: list[Path]) -> list[str]:
    """Each input's file name, or its path below the inputs' common folder where two
    share a name (`A/01 Intro.wav`, `B/01 Intro.wav`)."""
    names = [path.name for path in inputs]
    if len(set(names)) == len(names):
        return names
    try:
        common = os.path.commonpath([os.path.abspath(p.parent) for p in inputs])
    except ValueError:  # different drives
        return [str(path) for path in inputs]
    return [os.path.relpath(os.path.abspath(path), common) for path in inputs]


def render_summary(results, elapsed: float = 0.0, index: Path | None = None) -> None:
    """Print one row per track and a totals line, on stderr (stdout stays for --json)."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("track", "status", "time", "speed"):
        table.add_column(column, no_wrap=True)
    table.add_column("output", overflow="fold")
    names = _track_names([r.input for r in results])
    for r, name in zip(results, names):
        first = next(iter(r.stems.values()), None)
        speed = f"{r.speed:.1f}x" if r.speed else ""
        style = {"done": "green", "skipped": "yellow", "failed": "red"}[r.status]
        time = f"{r.seconds:.1f}s" if r.status != "skipped" else ""
        output = "stdout" if str(first) == "-" else str(first.parent) if first else ""
        if r.status == "failed":
            output = "see below"
        table.add_row(escape(name), f"[{style}]{r.status}[/]", time, speed, escape(output))
    err_console.print(table)
    for r in results:
        for stem, clipped in r.clipped_samples.items():
            if clipped:
                err_console.print(f"[yellow]note:[/] {escape(r.input.name)}/{stem}: {clipped} "
                                  "samples clipped (use --clip rescale or --bit-depth float32)")
    totals = _totals(results, elapsed)
    speed = f", {totals['speed']:.1f}x real time" if totals["speed"] else ""
    err_console.print(
        f"{totals['done']} done, {totals['skipped']} skipped, {totals['failed']} failed "
        f"in {elapsed:.1f}s{speed}"
    )
    figures = _throughput(results, elapsed)
    if figures["nodes"] > 1 or figures["workers"] > 1 or figures["retries"]:
        err_console.print(
            f"{figures['audio_hours']:.3f} audio hours on {figures['workers']} workers, "
            f"{figures['nodes']} node(s): {figures['audio_hours_per_node_hour'] or 0:.2f} "
            f"audio h per node-hour, {figures['audio_hours_per_worker_hour'] or 0:.2f} per "
            f"worker-hour; {figures['retries']} retried after a lost worker"
        )
    for r in results:
        if r.report is not None and index is None:
            err_console.print(f"report: {escape(str(r.report))}", soft_wrap=True)
    if index is not None:
        err_console.print(f"index:  {escape(str(index))}", soft_wrap=True)
