"""`stemsplit report OUTPUT_DIR`: a listening page (`report.html`) for stems already written.

Parses options, calls `stemsplit.report.report_folder` (imported lazily: it needs numpy and
Pillow, the CLI's start-up needs neither) and prints where the pages are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stemsplit.cli import app, common
from stemsplit.cli.common import print_json, run_guarded
from stemsplit.cli.help import PlainCommand


def _report(folder: Path, mixture: Path | None, reference: Path | None,
            metrics: list[str] | None):  # fmt: skip
    from stemsplit.api import report_folder

    return report_folder(folder, mixture=mixture, reference=reference, metrics=metrics)


@app.command(no_args_is_help=True, cls=PlainCommand)
def report(
    output_dir: Annotated[
        Path,
        typer.Argument(help="A track folder (stems inside) or a model folder (tracks inside)."),
    ],
    mixture: Annotated[
        Path | None,
        typer.Option(help="The mix: a file (one track) or a folder of <track>.<ext> files."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference stems for SDR: <stem>.<ext>, or <track>/<stem>.<ext>."),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option("--metrics", metavar="NAME,...",
                     help=f"With --reference, also show these scores per stem, as stemsplit "
                     f"eval computes them (repeatable): {common.METRICS_HELP}."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Write report.html beside the stems: synchronized players, waveforms, spectrograms."""
    reports, index = run_guarded(_report, output_dir, mixture, reference,
                                 common.split_commas(metrics), debug=debug)  # fmt: skip
    if json_output:
        print_json({"reports": [str(p) for p in reports], "index": str(index) if index else None})
        return
    for path in reports:
        common.out_console.print(f"report: {path}", soft_wrap=True)
    if index is not None:
        common.out_console.print(f"index:  {index}", soft_wrap=True)
