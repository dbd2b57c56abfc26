"""Mel-Band RoFormer (Wang et al. 2023), in MSST's layout: overlapping mel bands.

Each band gathers the STFT bins its (binarised) mel filter covers; the bins of
all bands are gathered in one `index_select`, and the per-band masks are scattered
back and averaged where bands overlap. Differences from BS-RoFormer, as in MSST:
every transformer ends with its own RMSNorm (no `final_norm`), and each band MLP
of the mask estimator has `mask_estimator_depth + 1` Linear layers.
"""

from __future__ import annotations

import numpy as np
import torch

from stemsplit.errors import ModelError
from stemsplit.models.base import ModelInfo
from stemsplit.models.roformer.config import MelBandRoformerConfig
from stemsplit.models.roformer.mel_bands import mel_band_membership
from stemsplit.models.roformer.network import RoformerNetwork


class MelBandRoformer(RoformerNetwork):
    """Mel-Band RoFormer; `forward(mix [b, c, t]) -> [b, stems, c, t]`."""

    # MSST's Mel-Band RoFormer band MLPs have one more Linear than mask_estimator_depth
    # (its Mel-Band Conformer's do not).
    extra_mask_layers: int = 1
    # Buffers (register_buffer in __init__).
    bin_indices: torch.Tensor
    bands_per_bin: torch.Tensor

    def __init__(self, config: MelBandRoformerConfig, info: ModelInfo) -> None:
        try:
            membership = mel_band_membership(
                config.sample_rate, config.stft.n_fft, config.num_bands
            )
        except ValueError as err:
            raise ModelError(f"mel_band_roformer config: {err}; use fewer num_bands") from err
        super().__init__(
            config.trunk,
            config.stft,
            tuple(int(count) for count in membership.sum(axis=1)),
            info,
            per_transformer_norm=True,
            mask_layers=config.trunk.mask_estimator_depth + self.extra_mask_layers,
        )
        self.config = config
        # Row-major nonzero: band by band, ascending bins within a band.
        bin_indices = torch.from_numpy(np.nonzero(membership)[1].astype(np.int64))
        bands_per_bin = torch.from_numpy(membership.sum(axis=0).astype(np.float32))
        self.register_buffer("bin_indices", bin_indices, persistent=False)
        self.register_buffer("bands_per_bin", bands_per_bin, persistent=False)

    def _select_bins(self, features: torch.Tensor) -> torch.Tensor:
        """features [b, n, f, c, 2] -> [b, n, sum of band sizes, c, 2]."""
        return features.index_select(2, self.bin_indices)

    def _merge_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Average the masks of the bands that share a bin: -> [b, s, n, f, c, 2]."""
        shape = (*masks.shape[:3], self.bands_per_bin.numel(), *masks.shape[4:])
        summed = masks.new_zeros(shape).index_add_(3, self.bin_indices, masks)
        return summed / self.bands_per_bin[:, None, None]
