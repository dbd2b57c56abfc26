"""A recipe's steps on one track, streamed: each step reads an earlier step's stem as
its blocks become final.

Every step is a node: a stream of `[stems, channels, n]` blocks at the output rate
(the same path `pipeline.run_track` takes: models, bags, ensemble, resampling, derived
stems). Pulling a block from a node hands each of its stems to its sinks: the writer of
a kept stem, and a `ChainSpool` for a stem a later step reads. A `ChainSpool` is a
`TrackSource` over a temporary float32 file that grows as its producer runs; a read
past what has arrived pulls the producer until the range is there (the engine reads
sample ranges, with context and reflect borders, so it needs random access). Memory
holds a few chunks per step, never a whole stem. A model that normalises by the whole
track's statistics (Demucs) reads them first, which pulls its producer to the end.

The driver drains the last node first, so the steps run interleaved: the chain's
first step is only as far ahead as the last one needs. The recipe's residual (the
mixture minus chosen outputs) is one more node that reads spools of those outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from stemsplit.audio.blocks import align, fit_length
from stemsplit.engine.bundle import Bundle, OnChunk, Runners
from stemsplit.engine.ensemble import Layout, append_residual, ensemble_stems
from stemsplit.engine.pipeline import (
    Separation,
    StemPlan,
    TrackJob,
    TrackOutcome,
    _stem_block,
    _StemResampler,
    bundle_stream,
    finish_writers,
    model_channels,
    output_clock,
    prepare_input,
)
from stemsplit.engine.source import TrackSource
from stemsplit.options import EngineSettings

BLOCK = 1 << 16  # samples per block when a spool is read in order


class StepPlan(Protocol):
    """What a step's own plan gives the chain: how its models' stems combine."""

    @property
    def layout(self) -> Layout: ...
    @property
    def stems(self) -> StemPlan: ...


class ChainStep(Protocol):
    """One planned step (`recipes.PlannedStep`): its models are `bundles[first:first +
    count]`, it reads `input` (a (step, stem) or the mixture), keeps and feeds stems."""

    @property
    def name(self) -> str: ...
    @property
    def input(self) -> tuple[str, str] | None: ...
    @property
    def plan(self) -> StepPlan: ...
    @property
    def first(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def keep(self) -> Mapping[str, str]: ...
    @property
    def feeds(self) -> tuple[str, ...]: ...


class Chain(Protocol):
    """A recipe planned once (`recipes.RecipePlan`), as the chain runs it."""

    @property
    def steps(self) -> Sequence[ChainStep]: ...
    @property
    def residual(self) -> tuple[str, tuple[str, ...]] | None: ...
    @property
    def outputs(self) -> tuple[str, ...]: ...
    @property
    def mixture_rates(self) -> list[int]: ...


class ChainSpool(TrackSource):
    """A stem of an earlier step, spooled to a file as it arrives; random access.

    `length` is known up front (every stem is cut to the track's length); `producer`
    (set by the chain) is pulled until a read's range has arrived. `mean`/`std` (Demucs'
    normalisation) need the whole stem, so asking for them pulls the producer to the end.
    """

    def __init__(self, length: int, samplerate: int, channels: int, folder: Path) -> None:
        self._done = False
        self._sum = 0.0
        self._sq = 0.0
        super().__init__(channels, length, samplerate)
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".stemsplit-chain-", suffix=".f32", dir=folder)
        self.path = Path(name)
        self._writer = os.fdopen(handle, "wb")
        self._reader = open(self.path, "rb")  # closed in close()
        self.written = 0
        self.producer: _Node | None = None

    # TrackSource sets mean/std in __init__; here they are computed on demand.
    @property
    def mean(self) -> float:
        self._complete()
        return self._sum / self.written if self.written else 0.0

    @mean.setter
    def mean(self, value: float) -> None:
        pass

    @property
    def std(self) -> float:
        self._complete()
        if not self.written:
            return 1.0
        mean = self._sum / self.written
        variance = (self._sq - self.written * mean**2) / max(self.written - 1, 1)
        return float(np.sqrt(max(variance, 0.0)))

    @std.setter
    def std(self, value: float) -> None:
        pass

    def write(self, block: np.ndarray) -> None:
        """Append `(channels, n)` samples (the producer's sink call)."""
        mono = block.mean(axis=0, dtype=np.float64)
        self._sum += float(mono.sum())
        self._sq += float(np.dot(mono, mono))
        self._writer.write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())
        self._writer.flush()
        self.written += block.shape[-1]

    def finish(self) -> None:
        self._done = True

    def _pull(self, stop: int) -> None:
        while self.written < stop and not self._done:
            if self.producer is None or not self.producer.pump():
                self._done = True

    def _complete(self) -> None:
        self._pull(self.length)

    def _read_raw(self, start: int, stop: int) -> np.ndarray:
        self._pull(stop)
        out = np.zeros((self.channels, stop - start), dtype=np.float32)
        have = min(stop, self.written)
        if have > start:
            frame = 4 * self.channels
            self._reader.seek(start * frame)
            data = self._reader.read((have - start) * frame)
            out[:, : have - start] = np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels).T
        return out

    def close(self) -> None:
        self._writer.close()
        self._reader.close()
        self.path.unlink(missing_ok=True)


class _Node:
    """A stream of `[stems, channels, n]` blocks; each pulled block goes to the sinks
    (`(stem index, sink)`: a writer or a ChainSpool)."""

    def __init__(self, name: str, blocks: Iterator[np.ndarray]) -> None:
        self.name = name
        self.blocks = blocks
        self.sinks: list[tuple[int, Any]] = []
        self.done = False

    def pump(self) -> bool:
        """Pull one block to the sinks; False once the stream has ended."""
        if self.done:
            return False
        block = next(self.blocks, None)
        if block is None:
            self.done = True
            for _, sink in self.sinks:
                if isinstance(sink, ChainSpool):
                    sink.finish()
            return False
        for index, sink in self.sinks:
            sink.write(block[index])
        return True

    def drain(self) -> None:
        while self.pump():
            pass


def read_in_order(source: TrackSource, length: int) -> Iterator[np.ndarray]:
    """`source` from 0 to `length`, block by block."""
    for start in range(0, length, BLOCK):
        yield source.read(start, min(start + BLOCK, length))


def step_stream(
    plan: StepPlan,
    bundles: Sequence[Bundle],
    sources: Mapping[int, TrackSource],
    mixture: Callable[[], Iterable[np.ndarray]],
    out_rate: int,
    out_length: int,
    settings: EngineSettings,
    runners: Runners,
    on_chunk: OnChunk | None = None,
) -> Iterator[np.ndarray]:
    """One step's written stems (`plan.stems.written`) as `[stems, channels, n]` blocks at
    `out_rate`, exactly `out_length` long: what `run_track` writes for `plan` when
    `sources` (per model rate) is its input and `mixture()` that input at `out_rate`."""
    layout, stems = plan.layout, plan.stems
    streams = []
    for index, bundle in enumerate(bundles):
        source = sources[bundle.samplerate]
        needed = layout.needs(index, stems.needed) or set(bundle.sources)
        blocks = bundle_stream(bundle, source, needed, settings, runners, on_chunk)
        if layout.uses_residual(index):
            blocks = append_residual(blocks, source)
        resample = _StemResampler(bundle.samplerate, out_rate, len(layout.streams[index]),
                                  source.channels)  # fmt: skip
        streams.append(fit_length(resample(blocks), out_length))
    merged = ensemble_stems(streams, layout, stems.needed)
    if stems.needs_mixture:
        paired: Iterable[list[Any]] = align([merged, fit_length(mixture(), out_length)])
    else:
        paired = ([block, None] for block in merged)
    for stems_block, mix_block in paired:
        by_name = dict(zip(stems.model_stems, stems_block))
        yield np.stack([_stem_block(s, by_name, mix_block, stems) for s in stems.written])


def _residual(mixture: Iterable[np.ndarray], parts: Sequence[ChainSpool]) -> Iterator[np.ndarray]:
    """The mixture minus `parts`, block by block: `[1, channels, n]`."""
    position = 0
    for block in mixture:
        count = block.shape[-1]
        total = block.astype(np.float32, copy=True)
        for part in parts:
            total -= part.read(position, position + count)
        position += count
        yield total[None]


class _Progress:
    """Overall progress: the mean of each step's fraction of chunks done."""

    def __init__(self, on_progress: Callable[[float], None] | None, steps: int) -> None:
        self.on_progress = on_progress
        self.fractions = [0.0] * steps

    def counter(self, step: int) -> Callable[[int, int], None] | None:
        if self.on_progress is None:
            return None

        def on_chunk(done: int, total: int) -> None:
            self.fractions[step] = min(1.0, done / max(total, 1))
            self.on_progress(sum(self.fractions) / len(self.fractions))  # type: ignore[misc]

        return on_chunk


def run_chain(
    job: TrackJob,
    run: Separation,
    recipe: Chain,
    on_progress: Callable[[float], None] | None = None,
) -> TrackOutcome:
    """Run `recipe` (a planned recipe; `run.bundles` are its models in step order) on
    one track and write its outputs to `job.outputs`; only the kept stems are written
    there, intermediate stems live in temporary spool files in `job.spool_dir`."""
    bundles = run.bundles
    prepared = job.prepared
    writers: dict[str, Any] = {}
    spools: list[ChainSpool] = []
    channels = model_channels(bundles)
    try:
        if prepared is None:
            prepared = prepare_input(job.input, recipe.mixture_rates, job.spool_dir, channels)
        sources = prepared.sources
        out_rate, out_length, mixture = output_clock(job, prepared, run, channels)

        def new_spool(rate: int, length: int, producer: _Node | None) -> ChainSpool:
            spool = ChainSpool(length, rate, channels, job.spool_dir)
            spool.producer = producer
            spools.append(spool)
            return spool

        for name in recipe.outputs:
            writers[name] = job.open_writer(name, out_rate, channels)
        progress = _Progress(on_progress, len(recipe.steps))
        contributing = set(recipe.residual[1]) if recipe.residual else set()
        parts: dict[str, ChainSpool] = {}
        fed: dict[tuple[str, str], ChainSpool] = {}
        nodes: list[_Node] = []
        for number, step in enumerate(recipe.steps):
            step_bundles = bundles[step.first : step.first + step.count]
            rates = sorted({b.samplerate for b in step_bundles})
            if step.input is None:
                step_sources: dict[int, TrackSource] = {rate: sources[rate] for rate in rates}
                step_mixture = mixture
            else:
                parent = fed[step.input]
                step_sources = {}
                for rate in rates:
                    if rate == out_rate:
                        step_sources[rate] = parent
                        continue
                    length = round(out_length * rate / out_rate)
                    resample = _StemResampler(out_rate, rate, 1, channels)
                    node = _Node(f"{step.name}@{rate}", fit_length(
                        resample(b[None] for b in read_in_order(parent, out_length)), length))
                    node.sinks.append((0, new_spool(rate, length, node)))
                    nodes.append(node)
                    step_sources[rate] = node.sinks[0][1]

                def step_mixture(parent: ChainSpool = parent) -> Iterator[np.ndarray]:
                    return read_in_order(parent, out_length)

            node = _Node(step.name, step_stream(
                step.plan, step_bundles, step_sources, step_mixture, out_rate, out_length,
                run.settings, run.runners, progress.counter(number)))  # fmt: skip
            written = list(step.plan.stems.written)
            for stem, out in step.keep.items():
                node.sinks.append((written.index(stem), writers[out]))
                if out in contributing:
                    parts[out] = new_spool(out_rate, out_length, node)
                    node.sinks.append((written.index(stem), parts[out]))
            for stem in step.feeds:
                fed[(step.name, stem)] = new_spool(out_rate, out_length, node)
                node.sinks.append((written.index(stem), fed[(step.name, stem)]))
            nodes.append(node)
        if recipe.residual:
            name, subtracted = recipe.residual
            node = _Node(name, _residual(mixture(), [parts[o] for o in subtracted]))
            node.sinks.append((0, writers[name]))
            nodes.append(node)
        for node in reversed(nodes):  # the last steps pull the earlier ones
            node.drain()
        return finish_writers(writers, job, out_length / out_rate)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    finally:
        for spool in spools:
            spool.close()
        if prepared is not None:
            prepared.close()
