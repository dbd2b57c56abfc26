"""The end-of-run table: done / skipped / failed, time and real-time factor."""

from __future__ import annotations

from rich.table import Table

from stemsplit.cli.common import err_console


def render_summary(results) -> None:
    """Print one row per track and a totals line, on stderr (stdout stays for --json)."""
    table = Table(show_edge=False, header_style="bold")
    for column in ("track", "status", "time", "speed", "output"):
        table.add_column(column)
    for r in results:
        folder = next(iter(r.stems.values())).parent if r.stems else None
        speed = f"{r.realtime_factor:.1f}x" if r.realtime_factor else ""
        style = {"done": "green", "skipped": "yellow", "failed": "red"}[r.status]
        table.add_row(r.input.name, f"[{style}]{r.status}[/]", f"{r.seconds:.1f}s", speed,
                      str(folder or r.error or ""))
    err_console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    for r in results:
        for stem, clipped in r.clipped_samples.items():
            if clipped:
                err_console.print(f"[yellow]note:[/] {r.input.name}/{stem}: {clipped} samples "
                                  "clipped (use --clip rescale or --bit-depth float32)")
    err_console.print(
        f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed"
    )
