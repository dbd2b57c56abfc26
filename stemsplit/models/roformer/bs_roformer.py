"""BS-RoFormer (Lu et al. 2023, "Music Source Separation with Band-Split RoPE
Transformer"), in MSST's layout: contiguous bands of `freqs_per_bands` bins.

Differences from Mel-Band RoFormer, as in MSST: the transformers have no output
norm and one `final_norm` follows the trunk; each band MLP of the mask estimator
has `mask_estimator_depth` Linear layers.
"""

from __future__ import annotations

from stemsplit.models.base import ModelInfo
from stemsplit.models.roformer.config import BSRoformerConfig
from stemsplit.models.roformer.network import RoformerNetwork


class BSRoformer(RoformerNetwork):
    """BS-RoFormer; `forward(mix [b, c, t]) -> [b, stems, c, t]`."""

    def __init__(self, config: BSRoformerConfig, info: ModelInfo) -> None:
        super().__init__(
            config.trunk,
            config.stft,
            config.freqs_per_bands,
            info,
            per_transformer_norm=False,
            mask_layers=config.trunk.mask_estimator_depth,
        )
        self.config = config
