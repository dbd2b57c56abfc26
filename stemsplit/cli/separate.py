"""`stemsplit separate INPUT...` (also the default command: `stemsplit song.wav`)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from stemsplit.cli import app
from stemsplit.cli.common import err_console, fail, print_json

log = logging.getLogger("stemsplit")

Model = Annotated[
    Optional[List[str]],
    typer.Option("-m", "--model", help="Model name (repeat for an ensemble). Default: htdemucs."),
]


def _parse_stems(value: Optional[str]) -> Optional[list[str]]:
    if not value:
        return None
    return [s.strip() for s in value.split(",") if s.strip()]


def _parse_weights(values: Optional[List[str]], models: list[str]) -> Optional[list[dict]]:
    """`--weights 2,1` (per model) or `--weights htdemucs_ft:vocals=2` (per model and stem)."""
    if not values:
        return None
    from stemsplit.errors import UsageError

    weights: list[dict] = [{} for _ in models]
    for value in values:
        if ":" in value:
            name, _, spec = value.partition(":")
            if name not in models:
                raise UsageError(f"--weights {value}: {name} is not one of the -m models")
            target = weights[models.index(name)]
            for item in spec.split(","):
                stem, _, number = item.partition("=")
                target[stem.strip() or "*"] = float(number)
        else:
            numbers = [float(v) for v in value.split(",")]
            if len(numbers) != len(models):
                raise UsageError(f"--weights {value}: give one weight per -m model")
            for target, number in zip(weights, numbers):
                target["*"] = number
    return weights


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
    inputs: Annotated[List[Path], typer.Argument(help="Audio files, folders or globs.")],
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
    ensemble: Annotated[str, typer.Option(help="avg, median, min-mag or max-mag.")] = "avg",
    weights: Annotated[Optional[List[str]], typer.Option(help="Ensemble weights.")] = None,
    model_dir: Annotated[Optional[Path], typer.Option(help="Model cache folder.")] = None,
    offline: Annotated[bool, typer.Option(help="Never use the network.")] = False,
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Descend into folders.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Redo tracks whose stems exist.")] = False,
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
            offline=offline or None, recursive=recursive, overwrite=overwrite,
            executor=executor, ray_address=ray_address, ray_workers=ray_workers,
        )
        results = _run(inputs, options, silent=quiet or json_output)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]: partial files removed; rerun to finish")
        raise typer.Exit(130) from None
    except Interrupted as err:
        err_console.print("[bold red]terminated[/]: partial files removed; rerun to finish")
        raise typer.Exit(err.exit_code) from None
    except StemsplitError as err:
        if debug:
            raise
        raise fail(str(err), err.exit_code) from None
    except Exception as err:  # a bug: still one line, the traceback behind --debug
        if debug:
            raise
        raise fail(f"unexpected {type(err).__name__}: {err} (rerun with --debug)", 1) from None
    from stemsplit.cli.summary import render_summary

    failed = [r for r in results if r.status == "failed"]
    if json_output:
        print_json({"tracks": [r.as_dict() for r in results],
                    "done": sum(r.status == "done" for r in results),
                    "skipped": sum(r.status == "skipped" for r in results),
                    "failed": len(failed)})
    elif not quiet:
        render_summary(results)
    for result in failed:
        err_console.print(f"[bold red]error:[/] {result.error}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _run(inputs: list[Path], options: dict, silent: bool):
    from stemsplit.api import separate as api_separate
    from stemsplit.cli.progress import progress_reporter

    with progress_reporter(enabled=not silent) as progress:
        return api_separate(inputs, progress=progress, **options)
