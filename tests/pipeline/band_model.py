"""A small deterministic test model: splits the mix into low and high bands.

It plugs in through the model protocol (and a ModelBundle-shaped wrapper), so the
whole reader -> engine -> writer path can be tested without pretrained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from stemsplit.models.base import Recipe


class BandSplit(nn.Module):
    """low = moving average of the mix over 9 samples; high = mix - low."""

    sources = ["low", "high"]
    audio_channels = 2

    def __init__(self, samplerate: int = 44100, residual: str | None = None,
                 window: str = "triangle") -> None:
        super().__init__()
        self.samplerate = samplerate
        self.residual = residual
        padding = "context" if window == "triangle" else "reflect-border"
        normalization = "track-mean-std" if window == "triangle" else "none"
        self.recipe = Recipe(samplerate, 0.25, window, padding, normalization, 2)
        kernel = torch.full((2, 1, 9), 1 / 9)
        self.register_buffer("kernel", kernel)

    def valid_length(self, length: int) -> int:
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        low = torch.nn.functional.conv1d(mix, self.kernel, padding=4, groups=2)
        return torch.stack([low, mix - low], dim=1)


@dataclass
class Bundle:
    """What the zoo's loader returns, for a single test model."""

    members: list
    name: str = "bandsplit"
    residual: str | None = None
    card: object = None
    weights: list = field(default_factory=list)

    def __post_init__(self) -> None:
        first = self.members[0]
        self.sources = list(first.sources)
        self.samplerate = first.samplerate
        if not self.weights:
            self.weights = [[1.0] * len(self.sources) for _ in self.members]


def band_bundle(**kwargs) -> Bundle:
    return Bundle([BandSplit(**kwargs)])
