"""What the engine reads of a loaded model: the `Bundle` protocol.

The zoo builds bundles (`zoo.loader.ModelBundle`); the engine runs them without
importing the zoo, so it names here the attributes it reads, and the runners it keeps
per network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

import numpy as np

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
