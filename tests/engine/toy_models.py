"""Deterministic position-dependent toy networks for engine tests.

Their output depends on where a sample sits inside the chunk, so any mistake in
chunk placement, padding, trimming or windowing changes the result.
"""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

from stemsplit.models.base import Recipe


class PositionalToy(nn.Module):
    """Two stems: x * ramp(t) and a causal running mean of x, per channel."""

    sources = ["ramp", "smooth"]
    audio_channels = 2
    residual = None

    def __init__(self, samplerate: int, recipe: Recipe, pad_to: int | None = None) -> None:
        super().__init__()
        self.samplerate = samplerate
        self.recipe = recipe
        self.segment = Fraction(recipe.segment_samples, samplerate)  # demucs reads model.segment
        self.pad_to = pad_to
        self.scale = nn.Parameter(torch.tensor(0.75))

    def valid_length(self, length: int) -> int:
        if self.pad_to is None:
            return length
        if length > self.pad_to:
            raise ValueError(f"segment longer than {self.pad_to}")
        return self.pad_to

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        time = mix.shape[-1]
        ramp = torch.linspace(0.5, 1.5, time, dtype=mix.dtype)
        smooth = torch.cumsum(mix, dim=-1) / torch.arange(1, time + 1, dtype=mix.dtype)
        return torch.stack([mix * ramp * self.scale, smooth], dim=1)
