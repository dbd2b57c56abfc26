"""HDemucs: Hybrid Demucs v3 (Défossez 2021), as in demucs 4.1 `hdemucs.py`.

The hybrid U-Net of `hybrid.py` without a transformer: depth 6 by default, the
last two layers are time convolutions after the branches merged, whose DConv
branches carry a BLSTM and local attention. Used by `hdemucs_mmi` and the MDX bags.
Built from an `HDemucsConfig` (demucs' keywords and defaults); inference only.
"""

from __future__ import annotations

import torch

from stemsplit.models.demucs.hybrid import HybridUNet
from stemsplit.models.demucs.hybrid_config import HDemucsConfig


class HDemucs(HybridUNet):
    """`forward(mix: [B, C, T]) -> [B, S, C, T]`, any length T (padding is internal)."""

    def __init__(self, config: HDemucsConfig) -> None:
        super().__init__()
        self.config = config
        self._build_unet(config)

    def valid_length(self, length: int) -> int:
        """Any length works (the model pads internally); demucs' apply_model uses it as is."""
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        z, x, xt, stats = self._front_end(mix)
        x, xt, skips = self._encode(x, xt)
        # The decoders start from zeros: the signal flows through the U-Net skips.
        xt = None if xt is None else torch.zeros_like(x)
        x, xt = self._decode(torch.zeros_like(x), xt, skips)
        return self._back_end(x, xt, z, stats, mix.shape[-1])
