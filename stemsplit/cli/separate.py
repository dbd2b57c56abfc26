"""`stemsplit separate INPUT...` (also the default command: `stemsplit song.wav`).

Parses, builds the checked request through `stemsplit.api` (a bad value is one
`error:` line and exit 2 before any work), runs it, renders progress and the summary.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from typing_extensions import Annotated

from stemsplit.cli import app, common
from stemsplit.cli.common import fail, print_json
from stemsplit.cli.help import SectionedCommand, section

if TYPE_CHECKING:
    from stemsplit.api import Request

log = logging.getLogger("stemsplit")

EPILOG = """Examples:
  stemsplit song.wav                             4 stems with htdemucs
  stemsplit song.mp3 --two-stems vocals          vocals + no_vocals
  stemsplit ~/Music -r -f flac -o stems          a library, mirrored under stems/htdemucs/
  stemsplit song.wav -m htdemucs_ft -s vocals    only the vocals specialist runs
  stemsplit song.wav --checkpoint m.ckpt --config m.yaml      any MSST model
  stemsplit song.wav -m htdemucs -m bs-roformer --ensemble avg
  ffmpeg -i in.m4a -f wav - | stemsplit - -s vocals -o - | ffplay -
                                                 stdin to stdout, one stem, as it comes
  stemsplit song.wav --recipe karaoke            instrumental, lead and backing vocals

Environment:
  STEMSPLIT_MIRROR=URL      download zoo files from URL/<file name> first
                            (e.g. http://host/models); then the official URLs
  STEMSPLIT_MODEL_DIR=DIR   the model cache folder
  STEMSPLIT_OFFLINE=1       never use the network
"""

Files = Optional[List[Path]]


def _split(values: Optional[List[str]]) -> Optional[list[str]]:
    """`-s vocals,drums -s bass` -> [vocals, drums, bass]."""
    if not values:
        return None
    return [s.strip() for value in values for s in value.split(",") if s.strip()]


def _parse_weights(values: Optional[List[str]], models: list[str]) -> Any:
    """`--weights 2,1` (one per model) or `--weights htdemucs_ft:vocals=2,drums=0`
    (per model and stem; the model may be a member of a preset given to -m)."""
    if not values:
        return None
    from stemsplit.errors import UsageError

    aligned: Optional[list[dict[str, float]]] = None
    named: dict[str, dict[str, float]] = {}
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
                    raise UsageError(f"--weights {value}: give one weight per model ({len(models)}: "
                                     "each -m, then each --checkpoint, in order)")  # fmt: skip
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


def _joined(values: Optional[List[str]]) -> Optional[str]:
    """`--stem-label a=X --stem-label b=Y` -> "a=X,b=Y"."""
    return ",".join(values) if values else None


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (their defaults stay the library's: some are checked
    only when given, e.g. --mp3-bitrate without -f mp3)."""
    return {key: value for key, value in options.items() if value is not None}


def _parse_rate(value: str) -> str | int:
    if value in ("input", "model"):
        return value
    try:
        return int(value)
    except ValueError:
        from stemsplit.errors import UsageError

        raise UsageError(f"--samplerate must be input, model or a number, not {value!r}") from None


def _install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: writers abort, temporary files go."""
    from stemsplit.errors import Interrupted

    def on_term(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, on_term)


# Help sections (cli/help.py lists the options under these titles).
M, OUT, E, B, R = "Model", "Output", "Engine", "Batch", "Report and display"


@app.command(no_args_is_help=True, cls=SectionedCommand, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"]})  # fmt: skip
def separate(
    inputs: Annotated[List[str], typer.Argument(metavar="INPUT...",
        help="Audio files, folders, globs or URLs (s3://bucket/prefix/); - reads stdin.")],  # fmt: skip
    model: Annotated[Optional[List[str]], typer.Option("-m", "--model", metavar="NAME",
        help=section(M, "Zoo model or preset (repeat, or mix with --checkpoint, for an "
                        "ensemble). Default: htdemucs."))] = None,  # fmt: skip
    checkpoint: Annotated[Files, typer.Option(metavar="FILE",
        help=section(M, "A model file instead of a zoo name (repeatable)."))] = None,
    config: Annotated[Files, typer.Option(metavar="FILE",
        help=section(M, "Config (yaml/json) of the --checkpoint at the same position."))] = None,
    model_type: Annotated[Optional[str], typer.Option(metavar="TYPE",
        help=section(M, "Architecture of --checkpoint when its config does not say "
                        "(MSST's --model_type names)."))] = None,  # fmt: skip
    ensemble: Annotated[Optional[str], typer.Option(metavar="ALGORITHM", help=section(M,
        "How models combine: avg (default), median, min-mag, max-mag, avg-spec, "
        "max-spec or min-spec."))] = None,  # fmt: skip
    weights: Annotated[Optional[List[str]], typer.Option(metavar="W,...", help=section(M,
        "Ensemble weights: 2,1 (per model) or MODEL:STEM=W,... (repeatable)."))] = None,
    recipe: Annotated[Optional[str], typer.Option(metavar="NAME|FILE", help=section(M,
        "Chained/routed steps instead of -m: a shipped recipe (`stemsplit recipes`) or a "
        "TOML file (FILE:NAME for one of several)."))] = None,  # fmt: skip
    model_dir: Annotated[Optional[Path], typer.Option(metavar="DIR",
        help=section(M, "Model cache folder."))] = None,
    offline: Annotated[bool, typer.Option(help=section(M, "Never use the network."))] = False,
    require_licence: Annotated[Optional[str], typer.Option(metavar="any|open|commercial",
        help=section(M, "Refuse zoo models whose weights' licence does not allow this use "
                     "(`stemsplit models --licence`); default STEMSPLIT_REQUIRE_LICENCE, "
                     "else any."))] = None,  # fmt: skip
    stems: Annotated[Optional[List[str]], typer.Option("-s", "--stems", metavar="STEM,...",
        help=section(OUT, "Write only these (repeatable), e.g. -s vocals,drums."))] = None,
    two_stems: Annotated[Optional[str], typer.Option(metavar="STEM",
        help=section(OUT, "Write STEM and no_STEM (they sum to the input)."))] = None,
    other_method: Annotated[str, typer.Option(metavar="minus|add",
        help=section(OUT, "no_STEM as mixture - STEM, or the sum of the others."))] = "minus",
    keep: Annotated[Optional[str], typer.Option(metavar="STEM", help=section(OUT,
        "With --two-stems X: write only X or only no_X."))] = None,
    out: Annotated[str, typer.Option("-o", "--out", metavar="DIR",
        help=section(OUT, "Output folder or URL (s3://bucket/prefix); - streams one stem "
                        "to stdout (wav, flac or raw f32le)."))] = "separated",  # fmt: skip
    filename: Annotated[str, typer.Option(metavar="TEMPLATE", help=section(OUT,
        "Path under OUT/<model>/: fields {reldir} {track} {stem} {ext} {model} "
        "{trackext}."))] = "{reldir}{track}/{stem}.{ext}",  # fmt: skip
    format: Annotated[str, typer.Option("-f", "--format", metavar="FORMAT", help=section(OUT,
        "wav, flac, mp3, ogg or opus (opus is always 48 kHz); raw (f32le) for -o -; "
        "stem.mp4 (alias stems): one NI Stems file per track for DJ software."))
        ] = "wav",  # fmt: skip
    input_format: Annotated[Optional[str], typer.Option(metavar="f32le|s16le", help=section(OUT,
        "stdin is raw PCM of this sample format (default: sniffed WAV, FLAC, Ogg, MP3)."))
        ] = None,  # fmt: skip
    input_rate: Annotated[Optional[int], typer.Option(metavar="HZ",
        help=section(OUT, "Sample rate of raw stdin."))] = None,
    input_channels: Annotated[Optional[int], typer.Option(metavar="N",
        help=section(OUT, "Channels of raw stdin."))] = None,
    bit_depth: Annotated[Optional[str], typer.Option(metavar="BITS",
        help=section(OUT, "16, 24 or float32 (wav/flac)."))] = None,
    mp3_bitrate: Annotated[Optional[int], typer.Option(metavar="KBPS",
        help=section(OUT, "MP3 bitrate, 8-320 (default 320)."))] = None,
    samplerate: Annotated[str, typer.Option(metavar="RATE",
        help=section(OUT, "Output rate: input, model or a number in Hz."))] = "input",
    clip: Annotated[str, typer.Option(metavar="POLICY",
        help=section(OUT, "clamp, rescale or none."))] = "clamp",
    copy_tags: Annotated[bool, typer.Option("--copy-tags/--no-copy-tags", help=section(OUT,
        "Copy the input's tags and cover art into every output."))] = True,  # fmt: skip
    naming: Annotated[Optional[str], typer.Option(metavar="SCHEME", help=section(OUT,
        "A peer's file names instead of --filename: demucs, audio-separator, uvr or "
        "msst."))] = None,  # fmt: skip
    stem_codec: Annotated[str, typer.Option(metavar="aac|alac", help=section(OUT,
        "-f stem.mp4: AAC 256 kb/s, or ALAC (lossless, --bit-depth 16|24)."))] = "aac",
    stem_map: Annotated[Optional[str], typer.Option(metavar="SLOT=STEM+...,...",
        help=section(OUT, "-f stem.mp4: stems summed into the drums, bass, other and vocals "
                     "tracks, e.g. other=other+guitar+piano."))] = None,  # fmt: skip
    stem_label: Annotated[Optional[List[str]], typer.Option(metavar="SLOT=NAME,...",
        help=section(OUT, "-f stem.mp4: a track's name in DJ software."))] = None,
    stem_color: Annotated[Optional[List[str]], typer.Option(metavar="SLOT=#RRGGBB,...",
        help=section(OUT, "-f stem.mp4: a track's colour."))] = None,
    device: Annotated[str, typer.Option(metavar="DEVICE",
        help=section(E, "auto, cpu, cuda[:N] or mps."))] = "auto",
    precision: Annotated[str, typer.Option(metavar="PRECISION", help=section(E,
        "fp32 (reference-exact), bf16, fp16, int8 (CPU only; trades accuracy for speed: "
        "HTDemucs ~29 dB from fp32, ~1.4x faster; docs/performance.md), or auto (bf16 "
        "where native; never int8)."))] = "fp32",
    batch_size: Annotated[Optional[int], typer.Option(metavar="N",
        help=section(E, "Chunks per forward pass; several short tracks share one."))] = None,
    segment: Annotated[Optional[float], typer.Option(metavar="SECONDS",
        help=section(E, "Chunk length."))] = None,
    overlap: Annotated[Optional[float], typer.Option(metavar="FRACTION",
        help=section(E, "Overlap between chunks, in [0, 1)."))] = None,
    shifts: Annotated[int, typer.Option(metavar="N",
        help=section(E, "Random time shifts to average (Demucs)."))] = 0,
    seed: Annotated[int, typer.Option(metavar="N", help=section(E, "Seed for --shifts."))] = 0,
    tta: Annotated[bool, typer.Option(help=section(E,
        "Test-time augmentation (MSST)."))] = False,
    threads: Annotated[Optional[int], typer.Option(metavar="N",
        help=section(E, "CPU threads for torch."))] = None,
    recursive: Annotated[bool, typer.Option("-r", "--recursive",
        help=section(B, "Descend into folders (their tree is mirrored)."))] = False,
    skip_existing: Annotated[bool, typer.Option("--skip-existing/--overwrite", help=section(B,
        "Skip tracks done with the same models and settings (stemsplit.json); "
        "--overwrite redoes them."))] = True,  # fmt: skip
    jobs: Annotated[int, typer.Option("-j", "--jobs", metavar="N", help=section(B,
        "I/O threads decoding and encoding beside the model (0: none)."))] = 1,
    executor: Annotated[str, typer.Option(metavar="local|ray",
        help=section(B, "Where tracks run."))] = "local",
    ray_address: Annotated[Optional[str], typer.Option(metavar="ADDRESS",
        help=section(B, "Ray cluster address."))] = None,
    ray_workers: Annotated[int, typer.Option(metavar="N",
        help=section(B, "Ray workers (one model each)."))] = 2,
    cpus_per_worker: Annotated[float, typer.Option(metavar="N",
        help=section(B, "CPUs each Ray worker holds (its torch threads)."))] = 1.0,
    gpus_per_worker: Annotated[float, typer.Option(metavar="F",
        help=section(B, "GPUs each Ray worker holds; 0.5 puts two on one GPU."))] = 0.0,
    retries: Annotated[int, typer.Option(metavar="N",
        help=section(B, "Runs of a track again after its Ray worker is lost."))] = 2,
    shard: Annotated[Optional[str], typer.Option(metavar="K/N", help=section(B,
        "Only the tracks whose input hashes to K of N (one task of an array job)."))] = None,
    report: Annotated[bool, typer.Option(help=section(R,
        "Write report.html beside each track's stems (index.html for a batch)."))] = False,
    reference: Annotated[Optional[Path], typer.Option(metavar="DIR", help=section(R,
        "Reference stems for SDR in the report."))] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet",
        help=section(R, "No progress (warnings and errors still show)."))] = False,
    json_output: Annotated[bool, typer.Option("--json",
        help=section(R, "JSON summary on stdout."))] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=section(R,
        "Print the plan (tracks, models, skips, time and memory from `stemsplit models "
        "bench`) and stop: nothing is downloaded or written."))] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help=section(R,
        "Device, threads, precision and chunk plan; debug logs."))] = False,
    debug: Annotated[bool, typer.Option(help=section(R, "Show tracebacks."))] = False,
) -> None:
    """Split each input into stems (files go to OUT/<model>/<track>/<stem>.<ext>)."""
    from stemsplit.cli.logs import setup_logging
    from stemsplit.errors import Interrupted, ReaderClosed, StemsplitError

    setup_logging(verbose=verbose or debug, quiet=quiet)
    _install_signal_handlers()
    started = time.perf_counter()
    try:
        from stemsplit.api import build_request, keep_large_blocks_on_heap

        keep_large_blocks_on_heap()  # before any tensor exists: see stemsplit/allocator.py
        names = list(model or [])
        request = build_request(
            model=names, checkpoint=checkpoint, config=config, model_type=model_type,
            ensemble=ensemble, weights=_parse_weights(weights, [*names, *map(str, checkpoint or [])] or ["htdemucs"]),
            model_dir=model_dir, offline=offline or None, recipe=recipe,
            require_licence=require_licence, stems=_split(stems),
            two_stems=two_stems, other_method=other_method, keep=keep, out=out, filename=filename,
            input_format=input_format, input_rate=input_rate, input_channels=input_channels,
            format=format, bit_depth=bit_depth,
            samplerate=_parse_rate(samplerate), clip=clip, copy_tags=copy_tags, naming=naming,
            stem_codec=stem_codec, stem_map=stem_map, stem_label=_joined(stem_label),
            stem_color=_joined(stem_color), device=device,
            precision=precision, batch_size=batch_size, segment_seconds=segment,
            overlap=overlap, shifts=shifts, seed=seed, tta=tta, threads=threads,
            recursive=recursive, skip_existing=skip_existing, jobs=jobs, executor=executor,
            ray_address=ray_address, ray_workers=ray_workers, cpus_per_worker=cpus_per_worker,
            gpus_per_worker=gpus_per_worker, retries=retries, shard=shard,
            report=report or reference is not None, reference=reference,
            **_given(mp3_bitrate=mp3_bitrate),
        )  # fmt: skip
        if json_output and request.output.stdout:
            from stemsplit.errors import UsageError

            raise UsageError("--json prints to stdout, which -o - fills with audio")
        if request.output.stdout and sys.stdout.isatty():  # as gzip and zstd refuse
            from stemsplit.errors import UsageError

            raise UsageError("-o - writes binary audio to stdout, which is a terminal: pipe "
                             "it (| ffplay -) or redirect it (> stem.wav)")  # fmt: skip
        if dry_run:
            from stemsplit.cli.dry_run import show_dry_run

            show_dry_run(inputs, request, json_output)
            return
        results = _run(inputs, request, silent=quiet or json_output)
    except KeyboardInterrupt:
        common.err_console.print("[bold red]interrupted[/]: partial files removed; rerun to finish")
        raise typer.Exit(130) from None
    except Interrupted as err:
        common.err_console.print("[bold red]terminated[/]: partial files removed; rerun to finish")
        raise typer.Exit(err.exit_code) from None
    except ReaderClosed as err:  # `-o - | head`: the reader has all it wanted (docs/pipes.md)
        _quiet_stdout()
        raise typer.Exit(err.exit_code) from None
    except StemsplitError as err:
        if debug:
            raise
        raise fail(str(err), err.exit_code) from None
    except Exception as err:  # a bug: still one line, the traceback behind --debug
        if debug:
            raise
        raise fail(f"unexpected {type(err).__name__}: {err} (rerun with --debug)", 1) from None
    _finish(results, time.perf_counter() - started, quiet, json_output)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: flushing what is left into the closed pipe at exit
    would print a BrokenPipeError (the recipe of Python's `signal` docs)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _run(inputs: list[str], request: Request, silent: bool) -> Any:
    """Run the request (the input decoded beside `import torch` when asked for:
    `stemsplit.startup`)."""
    from stemsplit.api import early_input, run_request
    from stemsplit.cli.progress import progress_reporter

    with early_input(inputs, request), progress_reporter(enabled=not silent) as progress:
        return run_request(inputs, request, progress)


def _finish(results: Any, elapsed: float, quiet: bool, json_output: bool) -> None:
    """The summary (a table for a batch; one input that fails is just its error line),
    then each error; exit 1 if any track failed."""
    from rich.markup import escape

    from stemsplit.cli.summary import render_summary, summary_dict

    failed = [r for r in results if r.status == "failed"]
    index = getattr(results, "report_index", None)
    if json_output:
        print_json(summary_dict(results, elapsed, index))
    elif not quiet and not (len(results) == 1 and failed):
        render_summary(results, elapsed, index)
    for result in failed:
        common.err_console.print(f"[bold red]error:[/] {escape(result.error or '')}",
                                 soft_wrap=True)  # fmt: skip
    if failed:
        raise typer.Exit(1)
