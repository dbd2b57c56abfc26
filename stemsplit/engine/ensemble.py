"""Combine the stems of several models: bags (per-member, per-stem weights, as
demucs' BagOfModels) and ensembles across architectures (UVR-style algorithms).

Blocks arrive aligned (same length from every model), so every algorithm works
sample by sample and memory stays bounded by one block per model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from stemsplit.engine.streams import align
from stemsplit.errors import UsageError

WAVEFORM_ALGORITHMS = ("avg", "median", "min-mag", "max-mag")
# 6-stem models split `other` further; a 4-stem ensemble folds them back.
FOLDED_INTO_OTHER = ("guitar", "piano")


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
    """One stem from several models: `values` are equal-shaped blocks."""
    stack = np.stack(values)
    if algorithm == "avg":
        w = np.asarray(weights, dtype=np.float32)
        return np.tensordot(w / w.sum(), stack, axes=1).astype(np.float32)
    if algorithm == "median":
        return np.median(stack, axis=0).astype(np.float32)
    if algorithm in ("min-mag", "max-mag"):
        pick = np.argmin if algorithm == "min-mag" else np.argmax
        index = pick(np.abs(stack), axis=0)
        return np.take_along_axis(stack, index[None], axis=0)[0]
    raise UsageError(
        f"unknown ensemble algorithm {algorithm!r}: use one of {', '.join(WAVEFORM_ALGORITHMS)}"
    )


def ensemble_stems(
    streams: Sequence[Iterable[np.ndarray]],
    bundles: Sequence,
    stems: Sequence[str],
    algorithm: str = "avg",
    model_weights: Sequence[dict[str, float]] | None = None,
) -> Iterator[np.ndarray]:
    """Yield [len(stems), channels, n] blocks combining each model's stems by name.

    `model_weights[i]` maps a stem (or "*") to model i's weight. A model without a
    stem does not vote for it; `guitar`/`piano` fold into `other` when `other` is
    requested but they are not.
    """
    if len(streams) == 1 and tuple(bundles[0].sources) == tuple(stems):
        yield from streams[0]
        return
    from stemsplit.engine.spectral import SPECTRAL_ALGORITHMS, SpectralCombiner

    if algorithm not in WAVEFORM_ALGORITHMS + SPECTRAL_ALGORITHMS:
        raise UsageError(
            f"unknown ensemble algorithm {algorithm!r}: use one of "
            f"{', '.join(WAVEFORM_ALGORITHMS + SPECTRAL_ALGORITHMS)}"
        )
    weights = model_weights or [{} for _ in bundles]
    voters_of = {
        stem: [i for i, b in enumerate(bundles) if stem in b.sources or
               (stem == "other" and set(FOLDED_INTO_OTHER) & set(b.sources))]
        for stem in stems
    }
    vote_weights = {
        stem: [weights[i].get(stem, weights[i].get("*", 1.0)) for i in voters_of[stem]]
        for stem in stems
    }
    spectral = algorithm in SPECTRAL_ALGORITHMS
    combiners = {s: SpectralCombiner(algorithm, vote_weights[s]) for s in stems} if spectral else {}
    for blocks in align(list(streams)):
        named = [_by_name(b.sources, block, stems) for b, block in zip(bundles, blocks)]
        out = []
        for stem in stems:
            values = [named[i][stem] for i in voters_of[stem]]
            if not values:
                values = [np.zeros_like(blocks[0][0])]
            if spectral:
                out.append(combiners[stem].push(np.stack(values)))
            else:
                out.append(combine(values, vote_weights[stem] or [1.0], algorithm))
        if out[0].shape[-1]:
            yield np.stack(out)
    if spectral:
        tails = [combiners[s].finish() for s in stems]
        if tails[0].ndim > 1 and tails[0].shape[-1]:
            yield np.stack(tails)


def _by_name(sources: Sequence[str], block: np.ndarray, wanted: Sequence[str]) -> dict:
    named = dict(zip(sources, block))
    if "other" in wanted and "other" in named:
        extra = [s for s in FOLDED_INTO_OTHER if s in named and s not in wanted]
        if extra:
            named["other"] = named["other"] + sum(named[s] for s in extra)
    return named
