"""Combine the stems of several models: bags (per-member, per-stem weights, as
demucs' BagOfModels) and ensembles across architectures (UVR-style algorithms).

Ensembles match stems by what they contain, not only by name. Every model's
stems partition the mix: its named stems (`drums`, `vocals`, ...) plus one
catch-all (its `other`, or the residual of a one-target vocals model) holding the
rest. An output stem is a set of those parts; a model votes for it when it can
build exactly that set as a sum of its own stems. So a 6-stem model's
`other + guitar + piano` votes for a 4-stem `other`, a vocals model's residual
votes for `instrumental` (drums + bass + other of a 4-stem model) but never for a
4-stem `other`, and a 4-stem model cannot vote for `other` once guitar is asked
for separately.

Blocks arrive aligned (same length from every model), so every algorithm works
block by block and memory stays bounded by one block per model (a few STFT frames
for the spectral ones).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stemsplit.audio.blocks import align
from stemsplit.engine.spectral import SpectralCombiner
from stemsplit.errors import UsageError
from stemsplit.models.base import INSTRUMENTAL  # everything but vocals; written when asked
from stemsplit.options import SPECTRAL_ALGORITHMS, check_algorithm

# 6-stem models split `other` further; a 4-stem ensemble folds them back.
FOLDED_INTO_OTHER = ("guitar", "piano")
CATCH_ALL = "other"
_REST = "\0rest"  # the part of the mix no model names


def member_needed(weights: Sequence[float], sources: Sequence[str], needed: set[str]) -> bool:
    """A bag member runs only if it has weight on a stem someone needs."""
    return any(w != 0 and s in needed for w, s in zip(weights, sources))


def stem_weights(weights: Sequence[Sequence[float]], num_stems: int) -> np.ndarray:
    """[members, stems] weights normalised per stem (demucs divides by the totals)."""
    matrix = np.asarray(weights, dtype=np.float32).reshape(len(weights), num_stems)
    totals = matrix.sum(axis=0)
    totals[totals == 0] = 1.0  # stems nobody computes stay zero (and are not written)
    return matrix / totals


def combine_blocks(blocks: Sequence[np.ndarray], matrix: np.ndarray) -> np.ndarray:
    """Weighted sum over members of [stems, channels, n] blocks."""
    if len(blocks) == 1 and np.all(matrix == 1):
        return blocks[0]
    out = np.zeros_like(blocks[0])
    for block, weights in zip(blocks, matrix):
        out += block * weights[:, None, None]
    return out


def combine(values: Sequence[np.ndarray], weights: Sequence[float], algorithm: str) -> np.ndarray:
    """One stem from several models: `values` are equal-shaped blocks.

    Weights matter to `avg` only; the others pick or rank per sample.
    """
    check_algorithm(algorithm)
    if len(values) == 1:
        return values[0]
    stack = np.stack(values)
    if algorithm == "avg":
        w = np.asarray(weights, dtype=np.float64)
        return np.tensordot(w / w.sum(), stack, axes=1).astype(np.float32)
    if algorithm == "median":
        return np.median(stack, axis=0).astype(np.float32)
    if algorithm in ("min-mag", "max-mag"):
        pick = np.argmin if algorithm == "min-mag" else np.argmax
        index = pick(np.abs(stack), axis=0)
        return np.take_along_axis(stack, index[None], axis=0)[0]
    raise UsageError(f"{algorithm} is a spectral algorithm: use engine.spectral")


@dataclass(frozen=True)
class Vote:
    """Model `model` estimates a stem as the sum of its stems `parts`, with `weight`."""

    model: int
    parts: tuple[str, ...]
    weight: float


@dataclass(frozen=True)
class Layout:
    """How an ensemble builds each output stem.

    `stems`: the output stems, in order; `votes[stem]`: who estimates it and how;
    `streams[i]`: the stems model i's stream carries (its sources, then its residual
    when a vote uses it); `residuals[i]`: model i's residual name or None.
    """

    stems: tuple[str, ...]
    votes: Mapping[str, tuple[Vote, ...]]
    streams: tuple[tuple[str, ...], ...]
    residuals: tuple[str | None, ...]
    algorithm: str = "avg"

    @property
    def passthrough(self) -> bool:
        """One model whose stream is the output as is (nothing to combine)."""
        return len(self.streams) == 1 and self.streams[0] == self.stems

    def needs(self, model: int, wanted: Iterable[str]) -> set[str]:
        """The sources of `model` that the output stems `wanted` need (empty: none)."""
        residual = self.residuals[model]
        sources = [s for s in self.streams[model] if s != residual]
        need: set[str] = set()
        for stem in wanted:
            for vote in self.votes.get(stem, ()):
                if vote.model == model:
                    need.update(sources if residual in vote.parts else vote.parts)
        return need

    def uses_residual(self, model: int) -> bool:
        return self.residuals[model] is not None and self.residuals[model] in self.streams[model]


def _weight(weights: Mapping[str, float], stem: str) -> float:
    value = float(weights.get(stem, weights.get("*", 1.0)))
    if value < 0 or not np.isfinite(value):
        raise UsageError(f"ensemble weight {value} for {stem}: weights must be >= 0")
    return value


def plan_ensemble(
    models: Sequence[tuple[Sequence[str], str | None]],
    requested: Iterable[str] = (),
    weights: Sequence[Mapping[str, float]] | None = None,
    algorithm: str = "avg",
) -> Layout:
    """Lay out an ensemble of `models` given as (sources, residual) pairs.

    `requested`: stems asked for by name (`--stems`, `--two-stems`, a preset's
    stems); they keep `guitar`/`piano` separate and make `instrumental` available.
    `weights[i]` maps a stem (or "*") to model i's weight; zero removes a vote.
    """
    check_algorithm(algorithm)
    requested = set(requested)
    weights = list(weights) if weights else [{} for _ in models]
    if len(weights) != len(models):
        raise UsageError(f"{len(weights)} weight entries for {len(models)} models")
    catch = [residual or (CATCH_ALL if CATCH_ALL in sources else None)
             for sources, residual in models]  # fmt: skip
    specific = [tuple(s for s in sources if s != c) for (sources, _), c in zip(models, catch)]
    named = list(dict.fromkeys(s for group in specific for s in group))
    with_other = [set(sources) for sources, _ in models if CATCH_ALL in sources]
    folded = {
        s for s in FOLDED_INTO_OTHER
        if s in named and s not in requested and not all(s in group for group in with_other)
    }  # fmt: skip
    kept = [s for s in named if s not in folded]
    universe = set(named) | {_REST}
    residual_names = {r for _, r in models}
    catch_name = CATCH_ALL
    if len(residual_names) == 1:
        (only_residual,) = residual_names
        if only_residual is not None:
            catch_name = only_residual  # e.g. every model calls it `instrumental`
    targets: dict[str, set[str]] = {s: {s} for s in kept}
    if catch_name not in targets:
        targets[catch_name] = universe - set(kept)
    if INSTRUMENTAL in requested and "vocals" in kept and INSTRUMENTAL not in targets:
        targets[INSTRUMENTAL] = universe - {"vocals"}

    votes: dict[str, tuple[Vote, ...]] = {}
    for stem, atoms in targets.items():
        found = []
        for index, (own, rest_name) in enumerate(zip(specific, catch)):
            parts = _parts(atoms, own, rest_name, universe)
            weight = _weight(weights[index], stem)
            if parts and weight > 0:
                found.append(Vote(index, parts, weight))
        if found:
            votes[stem] = tuple(found)
    order: list[str] = []  # the richest model's stem order first (4-stem, not vocals-first)
    richest = sorted(range(len(models)), key=lambda i: -len(models[i][0]))
    for (sources, _), rest_name in ((models[i], catch[i]) for i in richest):
        for source in (*sources, *([rest_name] if rest_name not in sources else [])):
            # (source is None only as a None rest_name: a model without a catch-all)
            stem = catch_name if source == rest_name or source is None else source
            if stem in votes and stem not in order:
                order.append(stem)
    order += [s for s in votes if s not in order]
    streams: list[tuple[str, ...]] = []
    for index, (sources, residual) in enumerate(models):
        stream = tuple(sources)
        if residual is not None and any(
            residual in v.parts for vs in votes.values() for v in vs if v.model == index
        ):
            stream = (*stream, residual)
        streams.append(stream)
    return Layout(tuple(order), votes, tuple(streams), tuple(r for _, r in models), algorithm)


def _parts(
    atoms: set[str], own: Sequence[str], rest_name: str | None, universe: set[str]
) -> tuple[str, ...]:
    """The model's stems summing to exactly `atoms`, or () when it cannot."""
    parts = [s for s in own if s in atoms]
    missing = atoms - set(parts)
    if not missing:
        return tuple(parts)
    if rest_name is not None and missing == universe - set(own):
        return (*parts, rest_name)
    return ()


def single_layout(sources: Sequence[str]) -> Layout:
    """The layout of one model used alone: its stream is the output."""
    stems = tuple(sources)
    votes = {s: (Vote(0, (s,), 1.0),) for s in stems}
    return Layout(stems, votes, (stems,), (None,))


class SampleReader(Protocol):
    """What `append_residual` reads the mixture from (a TrackSource or a view of one)."""

    def read(self, start: int, stop: int, /) -> np.ndarray: ...


def append_residual(blocks: Iterable[np.ndarray], source: SampleReader) -> Iterator[np.ndarray]:
    """[stems, C, n] blocks -> [stems + 1, C, n]: the mixture (read from `source`,
    a TrackSource at the blocks' rate) minus the stems, as a last stem."""
    position = 0
    for block in blocks:
        count = block.shape[-1]
        mixture = source.read(position, position + count)
        position += count
        yield np.concatenate([block, (mixture - block.sum(axis=0))[None]], axis=0)


def ensemble_stems(
    streams: Sequence[Iterable[np.ndarray]],
    layout: Layout,
    needed: Iterable[str] | None = None,
) -> Iterator[np.ndarray]:
    """Yield [len(layout.stems), channels, n] blocks combining the models' streams.

    `streams[i]` carries `layout.streams[i]`; stems outside `needed` come out as
    zeros (nobody will write them, so no work is spent on them).
    """
    if layout.passthrough:
        yield from streams[0]
        return
    stems = layout.stems
    compute = [s for s in stems if needed is None or s in set(needed)]
    spectral = layout.algorithm in SPECTRAL_ALGORITHMS
    combiners = {
        s: SpectralCombiner(layout.algorithm, [v.weight for v in layout.votes[s]])
        for s in compute
    } if spectral else {}  # fmt: skip
    shape = None
    for blocks in _slices(align(list(streams))):
        named = [dict(zip(names, block)) for names, block in zip(layout.streams, blocks)]
        shape = blocks[0].shape[1:]
        results = {}
        for stem in compute:
            values = [_sum(named[v.model], v.parts) for v in layout.votes[stem]]
            if spectral:
                results[stem] = combiners[stem].push(np.stack(values))
            else:
                results[stem] = combine(values, [v.weight for v in layout.votes[stem]],
                                        layout.algorithm)  # fmt: skip
        block = _assemble(stems, results, shape)
        if block.shape[-1]:
            yield block
    if spectral and shape is not None:
        block = _assemble(stems, {s: combiners[s].finish() for s in compute}, shape)
        if block.shape[-1]:
            yield block


# Models release up to a batch of segments at once (tens of seconds); combining in
# slices keeps the temporaries (stacks, float64 sums, STFT frames) a few MiB.
SLICE_SAMPLES = 1 << 16


def _slices(aligned: Iterable[list[np.ndarray]]) -> Iterator[list[np.ndarray]]:
    for blocks in aligned:
        length = blocks[0].shape[-1]
        for start in range(0, length, SLICE_SAMPLES):
            yield [b[..., start : start + SLICE_SAMPLES] for b in blocks]


def _sum(named: Mapping[str, np.ndarray], parts: Sequence[str]) -> np.ndarray:
    total = named[parts[0]]
    for part in parts[1:]:
        total = total + named[part]
    return total


def _assemble(
    stems: Sequence[str], results: Mapping[str, np.ndarray], shape: tuple[int, ...]
) -> np.ndarray:
    """Stack the computed stems, zeros for the others, as [stems, channels, n]."""
    count = next((r.shape[-1] for r in results.values()), 0)
    out = np.zeros((len(stems), shape[0], count), dtype=np.float32)
    for index, stem in enumerate(stems):
        if stem in results:
            out[index] = results[stem]
    return out
