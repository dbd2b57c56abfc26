"""What the engine reads of a loaded model: the `Bundle` protocol.

The zoo builds bundles (`zoo.loader.ModelBundle`); the engine runs them without
importing the zoo, so it names here the attributes it reads, and the runners it keeps
per network. A network that frames the track itself (`models.base.SelfChunking`) gets
the run's settings here, once, as its models are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np

from stemsplit.models.base import SelfChunking
from stemsplit.options import EngineSettings

if TYPE_CHECKING:
    from torch import nn


class Bundle(Protocol):
    """One model or a bag of networks: `weights[i][j]` is member i's weight for
    `sources[j]`; `residual` names mixture minus the sum of the outputs."""

    @property
    def name(self) -> str: ...
    @property
    def sources(self) -> Sequence[str]: ...
    @property
    def members(self) -> Sequence[nn.Module]: ...
    @property
    def weights(self) -> Sequence[Sequence[float]]: ...
    @property
    def residual(self) -> str | None: ...
    @property
    def samplerate(self) -> int: ...


# `[batch, channels, time] -> [batch, stems, channels, time]`: a `ModelRunner`, or one
# that pools several tracks' chunks into its passes (`engine.multi`).
RunBatch: TypeAlias = Callable[[np.ndarray], np.ndarray]
# Each network's runner for a run, by `id(network)` (built once, `separator`).
Runners: TypeAlias = dict[int, RunBatch]
# (chunks done, chunks in all) after each forward pass.
OnChunk: TypeAlias = Callable[[int, int], None]


def apply_engine_settings(bundles: Iterable[Bundle], settings: EngineSettings) -> None:
    """Hand the run's `--overlap`/`--batch-size`/`--tta` to each network that frames the
    track itself (`SelfChunking`: UVR's MDX-Net and VR), once, when the run's models are
    loaded and before any runner is built: the engine never patches a network mid-run."""
    for bundle in bundles:
        for member in bundle.members:
            if isinstance(member, SelfChunking):
                member.apply_engine_settings(overlap=settings.overlap,
                                             batch_size=settings.batch_size, tta=settings.tta)


def member_settings(member: object, settings: EngineSettings) -> EngineSettings:
    """The engine settings for one network: a network that frames the track itself
    (`SelfChunking`) has had them (`apply_engine_settings`), so the engine runs it as
    its recipe's one whole-track chunk, with none of them again."""
    if isinstance(member, SelfChunking):
        return replace(settings, overlap=None, batch_size=None, tta=False)
    return settings
