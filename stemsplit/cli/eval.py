"""`stemsplit eval`: score stems against references (uSDR, SI-SDR, BSSEval SDR if museval,
and with `--metrics` the community's: bleedless, fullness, l1_freq... as MSST computes them).

`stemsplit eval ESTIMATES REFERENCES` scores stems already written; `stemsplit eval
--model NAME DATASET` separates each `<track>/mixture.<ext>` first. Parses options, calls
`stemsplit.evaluate` (imported lazily: no numpy/torch at start-up) and renders a rich
table, `--json` on stdout or `--csv FILE`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from stemsplit.cli import app, common
from stemsplit.cli.common import print_json, run_guarded
from stemsplit.cli.help import PlainCommand

_LABELS = {"usdr": "uSDR", "si_sdr": "SI-SDR", "bss_sdr": "SDR (BSSEval v4)",
           "msst_si_sdr": "SI-SDR (MSST)", "k_sdr": "kSDR", "l1_freq": "L1Freq",
           "bleedless": "bleedless", "fullness": "fullness", "aura_stft": "AuraSTFT",
           "aura_mrstft": "AuraMRSTFT", "log_wmse": "logWMSE"}  # fmt: skip


def _run(paths: list[Path], model: str | None, save_stems: Path | None, bsseval: bool | None,
         options: dict[str, Any], metrics: list[str] | None = None):
    from stemsplit.api import evaluate_folders, evaluate_model, keep_large_blocks_on_heap
    from stemsplit.errors import UsageError

    keep_large_blocks_on_heap()  # before any tensor exists: see stemsplit/allocator.py

    if model is not None or options.get("checkpoint") is not None:
        if len(paths) != 1:
            raise UsageError("with --model give one DATASET folder (<track>/mixture.<ext>)")
        return evaluate_model(paths[0], model=model, save_stems=save_stems,
                              bsseval=bsseval, metrics=metrics, **options)
    if len(paths) != 2:
        raise UsageError("give ESTIMATES REFERENCES (two folders), or --model NAME DATASET")
    if save_stems is not None or options.get("config") is not None:
        raise UsageError("--save-stems and --config only apply with --model or --checkpoint")
    return evaluate_folders(paths[0], paths[1], bsseval=bsseval, metrics=metrics)


def _finite(value: Any) -> Any:
    """NaN/inf -> None, recursively: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _db(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _render(report) -> None:
    from rich.table import Table

    names = report.metric_names()
    units = "dB" if all(n.endswith("sdr") and n != "k_sdr" for n in names) else \
        "SDRs in dB, logWMSE like one; kSDR, L1Freq, bleedless, fullness, Aura*: 0-100"
    table = Table(title=f"scores ({units}; higher is better)")
    table.add_column("track", overflow="fold")
    table.add_column("stem", no_wrap=True)
    for name in names:
        table.add_column(_LABELS[name], justify="right")
    for score in report.scores:
        table.add_row(score.track, score.stem, *(_db(getattr(score, m)) for m in names))
    common.out_console.print(table)
    summary = Table(title="over tracks: mean / median")
    summary.add_column("stem", no_wrap=True)
    summary.add_column("tracks", justify="right")
    for name in names:
        summary.add_column(_LABELS[name], justify="right")
    for stem, by_metric in report.aggregate().items():
        cells = [f"{_db(by_metric[m]['mean'])} / {_db(by_metric[m]['median'])}" for m in names]
        summary.add_row(stem, str(by_metric[names[0]]["tracks"]), *cells)
    common.out_console.print(summary)


def _write_csv(report, path: Path) -> None:
    from stemsplit.errors import OutputError

    rows = report.csv_rows()
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["track", "stem", *report.metric_names()])
            writer.writeheader()
            writer.writerows(rows)
    except OSError as err:
        raise OutputError(f"cannot write --csv {path}: {err.strerror or err}") from err


@app.command("eval", no_args_is_help=True, cls=PlainCommand)
def eval_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="ESTIMATES REFERENCES (folders of <stem>.<ext> or of tracks), "
                       "or DATASET with --model.", show_default=False, metavar="PATH..."),
    ],
    model: Annotated[
        str | None,
        typer.Option("-m", "--model", help="Separate DATASET's <track>/mixture.* with this model."),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="Like --model, with a local model file instead.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config for --checkpoint.")] = None,
    save_stems: Annotated[
        Path | None, typer.Option(help="With --model: keep the stems in this folder.")
    ] = None,
    bsseval: Annotated[
        bool | None,
        typer.Option("--bsseval/--no-bsseval",
                     help="BSSEval v4 SDR via museval (default: when museval is installed)."),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option("--metrics", metavar="NAME,...",
                     help=f"Which scores (repeatable): {common.METRICS_HELP}. "
                     "Default: usdr, si_sdr, bss_sdr."),
    ] = None,
    device: Annotated[str, typer.Option(help="With --model: auto, cpu, cuda or mps.")] = "auto",
    shifts: Annotated[int, typer.Option(help="With --model: random shifts (Demucs).")] = 0,
    segment: Annotated[float | None, typer.Option(help="With --model: chunk seconds.")] = None,
    overlap: Annotated[float | None, typer.Option(help="With --model: chunk overlap.")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Model cache folder.")] = None,
    offline: Annotated[bool, typer.Option(help="Never use the network.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Also write the scores to this CSV file.")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No table, warnings only.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Score estimated stems against references: uSDR, SI-SDR (and BSSEval SDR); with
    --metrics the community's bleedless, fullness, l1_freq... as MSST computes them."""
    from stemsplit.cli.logs import setup_logging

    setup_logging(verbose=verbose or debug, quiet=quiet)
    options: dict[str, Any] = {
        "checkpoint": checkpoint, "config": config, "device": device, "shifts": shifts,
        "segment": segment, "overlap": overlap, "model_dir": model_dir,
        "offline": offline or None,
    }
    report = run_guarded(_run, paths, model, save_stems, bsseval, options,
                         common.split_commas(metrics), debug=debug)  # fmt: skip
    if csv_file is not None:
        run_guarded(_write_csv, report, csv_file, debug=debug)
    if json_output:
        print_json(_finite(report.to_dict()))
    elif not quiet:
        _render(report)
    for item in report.missing:
        what = f"{item['track']}/{item['stem']}" if item["stem"] else f"track {item['track']}"
        common.err_console.print(f"[yellow]not scored:[/] {what} is missing from {item['missing_from']}",
                          soft_wrap=True)
    for item in report.failed:
        common.err_console.print(f"[bold red]error:[/] {item['track']}: {item['error']}", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
