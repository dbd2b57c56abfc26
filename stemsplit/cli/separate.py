"""`stemsplit separate INPUT...` (also the default command: `stemsplit song.wav`)."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from stemsplit.cli import app
from stemsplit.cli import common
from stemsplit.cli.common import fail, print_json

log = logging.getLogger("stemsplit")

Model = Annotated[
    Optional[List[str]],
    typer.Option("-m", "--model", help="Model name (repeat for an ensemble). Default: htdemucs."),
]


def _parse_stems(value: Optional[str]) -> Optional[list[str]]:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


def _parse_weights(values: Optional[List[str]], models: list[str]):
    """`--weights 2,1` (one per -m model) or `--weights htdemucs_ft:vocals=2,drums=0`
    (per model and stem; the model may be a member of a preset given to -m)."""
    if not values:
        return None
    from stemsplit.errors import UsageError

    aligned: Optional[list] = None
    named: dict = {}
    for value in values:
        try:
            if ":" in value:
                name, _, spec = value.partition(":")
                target = named.setdefault(name.strip(), {})
                for item in spec.split(","):
                    stem, _, number = item.rpartition("=")
                    target[stem.strip() or "*"] = float(number)
            else:
                numbers = [float(v) for v in value.split(",")]
                if len(numbers) != len(models):
                    raise UsageError(f"--weights {value}: give one weight per -m model")
                aligned = [{"*": number} for number in numbers]
        except ValueError:
            raise UsageError(
                f"--weights {value}: use numbers, e.g. 2,1 or htdemucs_ft:vocals=2"
            ) from None
    if not named:
        return aligned
    for name, table in zip(models, aligned or []):
        named[name] = {**table, **named.get(name, {})}
    return named


def _parse_rate(value: str) -> str | int:
    if value in ("input", "model"):
        return value
    try:
        rate = int(value)
    except ValueError:
        from stemsplit.errors import UsageError

        raise UsageError(f"--samplerate must be input, model or a number, not {value!r}") from None
    return rate


def _install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: writers abort, temporary files go."""

    from stemsplit.errors import Interrupted

    def on_term(signum, frame):  # noqa: ARG001
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, on_term)


@app.command(no_args_is_help=True)
def separate(
    inputs: Annotated[List[Path], typer.Argument(metavar="INPUT", help="Audio files, folders or globs.")],
    model: Model = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="A model file instead of a zoo name.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Config for --checkpoint (yaml/json).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output folder.")] = Path("separated"),
    filename: Annotated[str, typer.Option(help="Path template under OUT/<model>/.")] = "{track}/{stem}.{ext}",
    format: Annotated[str, typer.Option("-f", "--format", help="wav, flac, mp3, ogg or opus.")] = "wav",
    bit_depth: Annotated[Optional[str], typer.Option(help="16, 24 or float32.")] = None,
    mp3_bitrate: Annotated[int, typer.Option(help="MP3 bitrate in kbps.")] = 320,
    stems: Annotated[Optional[str], typer.Option("-s", "--stems", help="Write only these, e.g. vocals,drums.")] = None,
    two_stems: Annotated[Optional[str], typer.Option(help="Write STEM and no_STEM.")] = None,
    other_method: Annotated[str, typer.Option(help="no_STEM as 'minus' (mixture - STEM) or 'add'.")] = "minus",
    samplerate: Annotated[str, typer.Option(help="Output rate: input, model or a number.")] = "input",
    clip: Annotated[str, typer.Option(help="clamp, rescale or none.")] = "clamp",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16.")] = "fp32",
    batch_size: Annotated[Optional[int], typer.Option(help="Chunks per forward pass.")] = None,
    segment: Annotated[Optional[float], typer.Option(help="Chunk length in seconds.")] = None,
    overlap: Annotated[Optional[float], typer.Option(help="Overlap between chunks (0-1).")] = None,
    shifts: Annotated[int, typer.Option(help="Random time shifts to average (Demucs).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed for --shifts.")] = 0,
    tta: Annotated[bool, typer.Option(help="Test-time augmentation (MSST).")] = False,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch.")] = None,
    ensemble: Annotated[Optional[str], typer.Option(
        help="How -m models combine: avg (default), median, min-mag, max-mag, avg-spec, "
             "max-spec or min-spec.")] = None,
    weights: Annotated[Optional[List[str]], typer.Option(
        help="Ensemble weights: 2,1 (per -m model) or MODEL:STEM=W,... (repeatable).")] = None,
    model_dir: Annotated[Optional[Path], typer.Option(help="Model cache folder.")] = None,
    offline: Annotated[bool, typer.Option(help="Never use the network.")] = False,
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Descend into folders.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing/--overwrite",
        help="Skip tracks whose stems are all written (resumes a stopped batch); "
             "--overwrite redoes them.")] = True,
    jobs: Annotated[int, typer.Option(
        "-j", "--jobs",
        help="I/O threads: decode the next tracks and encode stems while the model runs "
             "(0: all in one thread).")] = 1,
    report: Annotated[bool, typer.Option(
        help="Write report.html beside each track's stems (and index.html for a batch).")] = False,
    reference: Annotated[Optional[Path], typer.Option(
        help="Reference stems for SDR in the report: <stem>.<ext> or <track>/<stem>.<ext>.")] = None,
    executor: Annotated[str, typer.Option(help="local, or ray (a Ray cluster).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="Ray cluster address.")] = None,
    ray_workers: Annotated[int, typer.Option(help="Ray workers (one model each).")] = 2,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress output.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="JSON summary on stdout.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Debug logging.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Split each input into stems (files go to OUT/<model>/<track>/<stem>.<ext>)."""
    from stemsplit.cli.logs import setup_logging
    from stemsplit.errors import Interrupted, StemsplitError

    setup_logging(verbose=verbose or debug, quiet=quiet)
    _install_signal_handlers()
    models = model or ["htdemucs"]
    try:
        options = dict(
            model=models if len(models) > 1 else models[0],
            checkpoint=checkpoint, config=config, out=out, filename=filename,
            format=format.lower(), bit_depth=bit_depth, mp3_bitrate=mp3_bitrate,
            stems=_parse_stems(stems), two_stems=two_stems, other_method=other_method,
            samplerate=_parse_rate(samplerate), clip=clip, device=device, precision=precision,
            batch_size=batch_size, segment=segment, overlap=overlap, shifts=shifts, seed=seed,
            tta=tta, threads=threads, ensemble=ensemble,
            weights=_parse_weights(weights, models), model_dir=model_dir,
            offline=offline or None, recursive=recursive, skip_existing=skip_existing,
            jobs=jobs, report=report or reference is not None, reference=reference,
            executor=executor, ray_address=ray_address, ray_workers=ray_workers,
        )
        started = time.perf_counter()
        results = _run(inputs, options, silent=quiet or json_output)
        elapsed = time.perf_counter() - started
    except KeyboardInterrupt:
        common.err_console.print("[bold red]interrupted[/]: partial files removed; rerun to finish")
        raise typer.Exit(130) from None
    except Interrupted as err:
        common.err_console.print("[bold red]terminated[/]: partial files removed; rerun to finish")
        raise typer.Exit(err.exit_code) from None
    except StemsplitError as err:
        if debug:
            raise
        raise fail(str(err), err.exit_code) from None
    except Exception as err:  # a bug: still one line, the traceback behind --debug
        if debug:
            raise
        raise fail(f"unexpected {type(err).__name__}: {err} (rerun with --debug)", 1) from None
    from rich.markup import escape

    from stemsplit.cli.summary import render_summary, summary_dict

    failed = [r for r in results if r.status == "failed"]
    if json_output:
        print_json(summary_dict(results, elapsed, getattr(results, "index", None)))
    elif not quiet:
        render_summary(results, elapsed, getattr(results, "index", None))
    for result in failed:
        common.err_console.print(f"[bold red]error:[/] {escape(result.error or '')}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _run(inputs: list[Path], options: dict, silent: bool):
    from stemsplit.api import separate as api_separate
    from stemsplit.cli.progress import progress_reporter

    with progress_reporter(enabled=not silent) as progress:
        return api_separate(inputs, progress=progress, **options)
