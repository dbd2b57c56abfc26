"""One track, end to end: reader -> engine (per model) -> stem selection -> writers.

Everything moves block by block. The input is decoded once per model sample rate
into a spool file (random access for chunk padding, and the track statistics
Demucs' normalisation needs); each model yields its stems as a stream; bags and
ensembles combine streams; stems are resampled to the output rate, cut to exactly
the input's length, residuals computed against the mixture, and written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stemsplit.audio.blocks import align, fit_length
from stemsplit.engine.bundle import Bundle, OnChunk, Runners, member_settings
from stemsplit.engine.ensemble import Layout, combine_blocks, member_needed, stem_weights
from stemsplit.engine.live import CursorView, LiveInput, LiveSource, fit_length_later, live_stream
from stemsplit.engine.runner import separate_stream
from stemsplit.engine.source import ArraySource, NormalizedSource, SpoolSource, TrackSource
from stemsplit.errors import UnknownStem, UsageError
from stemsplit.models.base import as_separation_model, residual_alias
from stemsplit.options import EngineSettings

if TYPE_CHECKING:
    from stemsplit.audio.reader import AudioInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Derived:
    """A stem computed from others: `mixture - sum(parts)` ("minus") or `sum(parts)`."""

    kind: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class StemPlan:
    """Which stems a run writes and how each is made.

    `model_stems`: what the model(s) output, in order; `derived`: stems computed from
    them (residuals of one-target models, `no_X` of `--two-stems X`); `written`: the
    stems that get a file, in order.
    """

    model_stems: tuple[str, ...]
    derived: dict[str, Derived]
    written: tuple[str, ...]

    @property
    def needed(self) -> set[str]:
        """Model stems any written stem depends on (bags skip members for the rest)."""
        need = {s for s in self.written if s in self.model_stems}
        for name in self.written:
            if name in self.derived:
                need.update(self.derived[name].parts)
        return need

    @property
    def needs_mixture(self) -> bool:
        return any(self.derived[s].kind == "minus" for s in self.written if s in self.derived)


def plan_stems(
    available: Sequence[str],
    residual: str | None = None,
    stems: Sequence[str] | None = None,
    two_stems: str | None = None,
    other_method: str = "minus",
) -> StemPlan:
    """Resolve `--stems`, `--two-stems` and residuals against what the models give."""
    available = tuple(available)
    derived: dict[str, Derived] = {}
    if residual and residual not in available:
        derived[residual] = Derived("minus", available)
    alias = residual_alias(available, residual)
    if alias and alias in {*(stems or ()), two_stems}:  # written only when asked for
        derived[alias] = Derived("minus", available)
    everything = available + tuple(derived)
    if two_stems is not None:
        if two_stems not in everything:
            raise UnknownStem(
                f"--two-stems {two_stems}: the model has no such stem "
                f"(it has {', '.join(everything)})"
            )
        complement = f"no_{two_stems}"
        if two_stems in derived:  # e.g. `other` of a vocals model: its complement is vocals
            derived[complement] = Derived("sum", derived[two_stems].parts)
        else:
            others = tuple(s for s in available if s != two_stems)
            if other_method == "add" and others:
                derived[complement] = Derived("sum", others)
            else:  # so the pair sums to the input exactly
                derived[complement] = Derived("minus", (two_stems,))
        return StemPlan(available, derived, (two_stems, complement))
    written = everything
    if stems:
        unknown = [s for s in stems if s not in everything]
        if unknown:
            pair = next((s for s in unknown if s.startswith("no_") and s[3:] in available), None)
            hint = f"; for {pair} use --two-stems {pair[3:]} --keep {pair}" if pair else ""
            raise UnknownStem(f"unknown stem(s) {', '.join(unknown)}: the model gives "
                              f"{', '.join(everything)}{hint}")  # fmt: skip
        written = tuple(s for s in everything if s in stems)
    return StemPlan(available, derived, written)


@dataclass(frozen=True)
class Separation:
    """What every entry of the engine needs of a run, built once by the `Separator`:
    the loaded models, how their streams combine (`layout`) into the written stems
    (`stems`), the engine settings, each network's runner and the output rate."""

    bundles: Sequence[Bundle]
    layout: Layout
    stems: StemPlan
    settings: EngineSettings
    runners: Runners
    output_rate: int | str = "input"  # "input", "model" or an int


@dataclass
class TrackJob:
    """What one track needs: input, output paths per stem, writers."""

    input: Path
    outputs: dict[str, Path]
    spool_dir: Path
    writer_options: dict[str, Any] = field(default_factory=dict)
    prepared: PreparedInput | None = None  # decoded ahead of time (batch prefetch)
    writer_factory: Callable[..., Any] | None = None  # StemWriter's signature, else StemWriter
    # per-stem writer options on top of writer_options (a stem's tags; its stem-file slot)
    stem_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def open_writer(self, stem: str, samplerate: int, channels: int) -> Any:
        """The writer of `stem`'s output, from the job's factory and options."""
        from stemsplit.audio.writer import StemWriter

        factory = self.writer_factory or StemWriter
        return factory(self.outputs[stem], samplerate, channels, **self.writer_options,
                       **self.stem_options.get(stem, {}))  # fmt: skip


@dataclass
class PreparedInput:
    """An input decoded into one spool file per model rate; `close()` deletes them."""

    info: AudioInfo
    sources: dict[int, SpoolSource]
    decoded_frames: int  # frames at the input's own rate: its true length

    def close(self) -> None:
        for source in self.sources.values():
            source.close()


def prepare_input(
    path: Path, rates: Sequence[int], spool_dir: Path, channels: int = 2
) -> PreparedInput:
    """Decode `path` once per rate into spool files of `channels` channels (the models'),
    a batch runs this ahead, in threads."""
    from stemsplit.audio.reader import probe, read_blocks

    info = probe(path)
    sources: dict[int, SpoolSource] = {}
    decoded: list[int] = []
    try:
        for rate in sorted(set(rates)):
            blocks = read_blocks(path, samplerate=rate, channels=channels,
                                 on_decoded=decoded.append)  # fmt: skip
            sources[rate] = SpoolSource(blocks, rate, spool_dir)
        if not decoded[0]:
            from stemsplit.errors import UndecodableAudio

            raise UndecodableAudio(f"{path} holds no samples (0 frames); nothing to separate")
    except BaseException:
        for source in sources.values():
            source.close()
        raise
    return PreparedInput(info, sources, decoded[0])


@dataclass
class TrackOutcome:
    """What a finished track reports."""

    stems: dict[str, Path]
    audio_seconds: float
    clipped_samples: dict[str, int]


class _StemResampler:
    """Streams [stems, channels, n] blocks from one rate to another with soxr."""

    def __init__(self, in_rate: int, out_rate: int, stems: int, channels: int) -> None:
        import soxr

        self.shape = (stems, channels)
        self.stream = (
            None
            if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, stems * channels, dtype="float32",
                                     quality="HQ")
        )

    def __call__(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        if self.stream is None:
            yield from blocks
            return
        flat = self.shape[0] * self.shape[1]
        for block in blocks:
            frames = np.ascontiguousarray(block.reshape(flat, -1).T)
            out = self.stream.resample_chunk(frames, last=False)
            if out.shape[0]:
                yield out.T.reshape(*self.shape, -1)
        tail = self.stream.resample_chunk(np.zeros((0, flat), np.float32), last=True)
        if tail.shape[0]:
            yield tail.T.reshape(*self.shape, -1)


def bundle_stream(
    bundle: Bundle,
    source: TrackSource,
    needed: set[str],
    settings: EngineSettings,
    runners: Runners,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """One model or bag: [len(bundle.sources), channels, n] blocks at the model rate.

    Bag members whose weights are zero for every needed stem are never run.
    """
    members = [
        (member, weights)
        for member, weights in zip(bundle.members, bundle.weights)
        if member_needed(weights, bundle.sources, needed)
    ]
    streams = []
    views: list[NormalizedSource | None] = []
    for module, _ in members:
        member = as_separation_model(module)
        normalize = member.recipe.normalization == "track-mean-std"
        runner = runners.get(id(member))
        if isinstance(source, LiveSource):  # input still arriving: running statistics
            views.append(None)
            streams.append(live_stream(member, source, member_settings(member, settings),
                                       runner, normalize, on_chunk))  # fmt: skip
            continue
        view = NormalizedSource(source) if normalize else None
        views.append(view)
        streams.append(separate_stream(member, view or source, member_settings(member, settings),
                                       runner, on_chunk))  # fmt: skip
    matrix = stem_weights([w for _, w in members], len(bundle.sources))
    for blocks in align(streams):
        blocks = [v.denormalize(b) if v is not None else b for v, b in zip(views, blocks)]
        yield combine_blocks(blocks, matrix)


def model_channels(bundles: Sequence[Bundle]) -> int:
    """The audio channels every model of a run takes (stereo, or mono for mono models);
    the input is decoded (and the stems written) with that many."""
    counts = {int(getattr(m, "audio_channels", 2)) for b in bundles for m in b.members}
    if len(counts) != 1:
        from stemsplit.errors import ModelError

        raise ModelError(f"the models take different channel counts ({sorted(counts)}): "
                         "run mono and stereo models separately")
    return counts.pop()


def run_track(
    job: TrackJob, run: Separation, on_progress: Callable[[float], None] | None = None
) -> TrackOutcome:
    """Separate one track and write its stems, as `run.layout` (how the models' streams
    combine) and `run.stems` (which stems are written, how derived ones are made) say."""
    from stemsplit.audio.writer import StemWriter

    rates = sorted({b.samplerate for b in run.bundles})
    channels = model_channels(run.bundles)
    prepared = job.prepared
    writers: dict[str, StemWriter] = {}
    try:
        if prepared is None:
            prepared = prepare_input(job.input, rates, job.spool_dir, channels)
        sources = prepared.sources
        reference = sources[rates[0]]
        out_rate, out_length, mixture = output_clock(job, prepared, run, channels)
        blocks = stem_blocks(sources, run, out_rate, out_length, mixture, on_progress)
        for stem in run.stems.written:
            writers[stem] = job.open_writer(stem, out_rate, reference.channels)
        for named in blocks:
            for stem, block in named.items():
                writers[stem].write(block)
        return finish_writers(writers, job, out_length / out_rate)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        if prepared is not None:
            prepared.close()


def output_clock(
    job: TrackJob, prepared: PreparedInput, run: Separation, channels: int
) -> tuple[int, int, Callable[[], Iterator[np.ndarray]]]:
    """A track's output rate, its exact output length, and the input re-read at that
    rate (for stems derived against the mixture): shared by single runs and chains."""
    from stemsplit.audio.reader import read_blocks

    info = prepared.info
    out_rate = _output_rate(run.output_rate, info.samplerate, run.bundles)
    fixed = _fixed_rate(job.writer_options.get("format"))
    if fixed and fixed != out_rate:
        log.warning("%s: %s files are always %d kHz: its stems are resampled from %d Hz",
                    job.input.name, job.writer_options["format"], fixed // 1000, out_rate)
    # The input's length is what its decoder gives, not `info.frames`: for PyAV inputs
    # (m4a, mp4) that is the container's estimate, often off by an AAC frame or more.
    out_length = round(prepared.decoded_frames * out_rate / info.samplerate)
    native = out_rate == info.samplerate

    def mixture() -> Iterator[np.ndarray]:
        return fit_length(read_blocks(job.input, samplerate=None if native else out_rate,
                                      channels=channels), out_length)  # fmt: skip

    return out_rate, out_length, mixture


def finish_writers(writers: Mapping[str, Any], job: TrackJob, seconds: float) -> TrackOutcome:
    """Publish every stem (each writer renames its finished file) and report the track."""
    for writer in writers.values():
        writer.close()
    return TrackOutcome(
        stems=dict(job.outputs),
        audio_seconds=seconds,
        clipped_samples={s: w.clipped_samples for s, w in writers.items()},
    )


def stem_blocks(
    sources: Mapping[int, TrackSource],
    run: Separation,
    out_rate: int,
    out_length: int | Callable[[], int],
    mixture: Callable[[], Iterator[np.ndarray]],
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """The core every path shares (files, arrays, pipes, live streams): the models'
    streams over `sources` (one per model rate), combined by `run.layout`, resampled to
    `out_rate`, cut to `out_length` (a number, or a function asked once the streams end
    when the input's length is not known yet), and the written stems of `run.stems` made,
    derived ones against `mixture()` (the input at `out_rate`, read in lockstep).
    Yields `{stem: (channels, n) block}` in order, every written stem in each."""
    from stemsplit.engine.ensemble import append_residual, ensemble_stems

    def fit(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        if isinstance(out_length, int):
            return fit_length(blocks, out_length)
        return fit_length_later(blocks, out_length)

    layout, plan = run.layout, run.stems
    total_chunks = _progress_counter(on_progress, len(run.bundles))
    streams = []
    for index, bundle in enumerate(run.bundles):
        source = sources[bundle.samplerate]
        needed = layout.needs(index, plan.needed) or set(bundle.sources)
        blocks = bundle_stream(bundle, source, needed, run.settings, run.runners, total_chunks)
        if layout.uses_residual(index):  # a vocals model's instrumental votes too
            reader = CursorView(source) if isinstance(source, LiveSource) else source
            blocks = append_residual(blocks, reader)
        resample = _StemResampler(bundle.samplerate, out_rate, len(layout.streams[index]),
                                  source.channels)
        streams.append(fit(resample(blocks)))
    merged = ensemble_stems(streams, layout, plan.needed)
    paired: Iterable[Sequence[np.ndarray | None]]
    if plan.needs_mixture:
        paired = align([merged, fit(mixture())])
    else:
        paired = ([block, None] for block in merged)
    for stems_block, mix_block in paired:
        assert stems_block is not None  # the models' stems come first in every pair
        by_name = dict(zip(plan.model_stems, stems_block))
        yield {stem: _stem_block(stem, by_name, mix_block, plan) for stem in plan.written}


def live_stems(
    blocks: Iterable[np.ndarray],
    samplerate: int,
    run: Separation,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """`stem_blocks` over input still arriving (`(2, n)` float32 blocks at `samplerate`):
    read only as chunks need it, stems yielded as soon as they are final. See
    `engine.live` for how this differs from file mode."""
    channels = model_channels(run.bundles)
    hub = LiveInput((conform_channels(b, channels) for b in blocks), samplerate, channels)
    sources = {rate: hub.source(rate) for rate in sorted({b.samplerate for b in run.bundles})}
    out_rate = _output_rate(run.output_rate, samplerate, run.bundles)
    mix_source = hub.source(out_rate) if run.stems.needs_mixture else None

    def out_length() -> int:
        return round(hub.frames * out_rate / samplerate)

    def mixture() -> Iterator[np.ndarray]:
        assert mix_source is not None
        return CursorView(mix_source).blocks()

    yield from stem_blocks(sources, run, out_rate, out_length, mixture, on_progress)


def array_stems(
    audio: np.ndarray,
    samplerate: int,
    run: Separation,
    on_progress: Callable[[float], None] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """`stem_blocks` over a whole `(2, n)` float32 array: file mode's numbers (the
    track's statistics, its length known), resampled as `audio.reader` resamples files."""
    from stemsplit.audio.pipe import resample_array

    audio = conform_channels(np.asarray(audio, dtype=np.float32), model_channels(run.bundles))
    length = audio.shape[1]
    sources: dict[int, TrackSource] = {}
    for rate in sorted({b.samplerate for b in run.bundles}):
        signal = audio if rate == samplerate else resample_array(audio, samplerate, rate)
        sources[rate] = ArraySource(signal, rate)
    out_rate = _output_rate(run.output_rate, samplerate, run.bundles)

    def mixture() -> Iterator[np.ndarray]:
        if out_rate in sources:
            yield sources[out_rate].read(0, sources[out_rate].length)
        else:
            yield resample_array(audio, samplerate, out_rate)

    yield from stem_blocks(sources, run, out_rate, round(length * out_rate / samplerate),
                           mixture, on_progress)  # fmt: skip


def conform_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """A `(c, n)` block at the models' channel count, as `audio.reader` maps files:
    mono duplicated, more channels downmixed (ITU-R BS.775 weights)."""
    from stemsplit.audio.reader import downmix_matrix

    block = np.asarray(block, dtype=np.float32)
    if block.ndim != 2:
        raise UsageError(f"audio must be (channels, samples), not shape {block.shape}")
    if block.shape[0] == channels:
        return np.ascontiguousarray(block)
    if block.shape[0] < channels:
        return np.ascontiguousarray(np.repeat(block[:1], channels, axis=0))
    return np.ascontiguousarray(downmix_matrix(block.shape[0], channels).astype(np.float32)
                                @ block)  # fmt: skip


def _output_rate(output_rate: int | str, input_rate: int, bundles: Sequence[Bundle]) -> int:
    if output_rate == "input":
        return input_rate
    if output_rate == "model":
        return bundles[0].samplerate
    return int(output_rate)


def _fixed_rate(format_name: str | None) -> int | None:
    from stemsplit.audio.formats import OUTPUT_FORMATS

    fmt = OUTPUT_FORMATS.get(format_name or "")
    return fmt.fixed_samplerate if fmt else None


def _stem_block(stem: str, by_name: dict[str, np.ndarray], mixture: np.ndarray | None,
                plan: StemPlan) -> np.ndarray:  # fmt: skip
    """The block of `stem`: a model output, or derived from them (and the mixture, which
    is there when `plan.needs_mixture`)."""
    rule = plan.derived.get(stem)
    if rule is None:
        return by_name[stem]
    total = by_name[rule.parts[0]].copy()
    for part in rule.parts[1:]:
        total += by_name[part]
    if rule.kind != "minus":
        return total
    assert mixture is not None
    return mixture - total


def _progress_counter(on_progress: Callable[[float], None] | None, passes: int
                      ) -> OnChunk | None:  # fmt: skip
    if on_progress is None:
        return None

    def on_chunk(done: int, total: int) -> None:
        on_progress(min(1.0, done / max(total, 1)))

    return on_chunk
