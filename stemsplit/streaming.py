"""One track through pipes: stdin (or a file) in, one stem on stdout (or stem files) out.

The pipe counterpart of the batch loop (docs/pipes.md): input from stdin is separated
while it arrives (`Separator.stream`); a file sent to stdout is separated as in file
mode and its stem streamed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stemsplit.errors import UsageError
from stemsplit.layout import outputs_for
from stemsplit.options import OutputOptions, Progress, TrackResult
from stemsplit.request import Request
from stemsplit.separator import Separator

log = logging.getLogger(__name__)


def check_pipe(source: str | Path, request: Request) -> None:
    """Usage errors of a pipe run, before anything loads."""
    pipe = request.pipe
    from_stdin = str(source) == "-"
    if pipe.given and not from_stdin:
        raise UsageError("--input-format describes stdin: give - as the input")
    if not from_stdin and Path(source).is_dir():
        raise UsageError(f"-o - takes one file, not the folder {source}")
    if from_stdin and request.output.stem_file:
        raise UsageError("-f stem.mp4 needs an input file (its first track is the input): "
                         "not stdin")  # fmt: skip


def run_pipe(
    source: str | Path,
    separator: Separator,
    request: Request,
    stdin: Any = None,
    stdout: Any = None,
    progress: Callable[[Progress], None] | None = None,
) -> TrackResult:
    """One input from stdin (`source` "-") or a file, to one stem on stdout (`-o -`) or
    to stem files: the pipe counterpart of `run_request` (docs/pipes.md). Input from
    stdin is separated while it arrives (`Separator.stream`); a file to stdout is
    separated as in file mode, its stem streamed."""
    from stemsplit.audio.pipe import StreamWriter, read_stream

    output: OutputOptions = request.output
    pipe = request.pipe
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    from_stdin = str(source) == "-"
    plan = separator.plan
    label = Path("-") if from_stdin else Path(source)
    started = time.perf_counter()
    options: dict[str, Any] = {"format": output.format, "bit_depth": output.bit_depth,
               "mp3_bitrate": output.mp3_bitrate, "clip": output.clip}  # fmt: skip

    def to_stdout(_path: Any, rate: int, channels: int, **kwargs: Any) -> StreamWriter:
        return StreamWriter(stdout, rate, channels, **kwargs)

    if not from_stdin:  # a file to stdout: file mode's numbers, the stem streamed
        with tempfile.TemporaryDirectory(prefix="stemsplit-") as spool:
            outcome = separator.separate_track(
                Path(source), {plan.stems.written[0]: Path("-")}, writer_factory=to_stdout,
                spool_dir=Path(spool))  # fmt: skip
        return TrackResult(label, "done", dict(outcome.stems),
                           seconds=time.perf_counter() - started,
                           audio_seconds=outcome.audio_seconds,
                           clipped_samples=outcome.clipped_samples)  # fmt: skip
    _ = separator.bundles  # models loaded (runners built) before the pipe is read
    opened = read_stream(stdin, pipe.input_format, pipe.input_rate, pipe.input_channels)
    log.info("stdin: %s, %d Hz, %d channel(s)", opened.description,
                                        opened.samplerate, opened.channels)  # fmt: skip
    if output.stdout:
        paths = {plan.stems.written[0]: Path("-")}
    else:
        paths = outputs_for(plan, Path("stdin"))
    from stemsplit.audio.writer import StemWriter

    writers: dict[str, Any] = {}
    frames = 0
    rate = None
    closed: list[str] = []  # stems renamed to their final names
    try:
        for named in separator.stream(opened.blocks, opened.samplerate,
                                          keep_shape=False):
            for stem, block in named.items():
                if stem not in writers:
                    rate = _stream_rate(output.samplerate, opened.samplerate, separator)
                    make = to_stdout if output.stdout else StemWriter
                    writers[stem] = make(paths[stem], rate, block.shape[0], **options)
                writers[stem].write(block)
            frames += next(iter(named.values())).shape[-1]
        for stem, writer in writers.items():
            writer.close()
            closed.append(stem)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        if not output.stdout:  # no stem of a failed track stays (docs/reliability.md)
            for stem in closed:
                paths[stem].unlink(missing_ok=True)
        raise
    return TrackResult(label, "done", paths, seconds=time.perf_counter() - started,
                       audio_seconds=frames / rate if rate else 0.0,
                       clipped_samples={s: w.clipped_samples for s, w in writers.items()})


def _stream_rate(samplerate: int | str, input_rate: int, separator: Any) -> int:
    if samplerate == "input":
        return input_rate
    if samplerate == "model":
        return separator.plan.models[0].samplerate
    return int(samplerate)
