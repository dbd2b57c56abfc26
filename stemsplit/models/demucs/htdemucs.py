"""HTDemucs: Hybrid Transformer Demucs (demucs v4, Rouard et al. 2023).

The hybrid U-Net of `hybrid.py` with a cross-domain transformer between its
encoders and decoders, built from an `HTDemucsConfig` (`HTDemucsConfig.from_kwargs`
takes a checkpoint's stored demucs 4.1 kwargs); its state_dict loads with strict=True.
Inference only: the training-time options (dropout, random shifts, CAPE
augmentation, weight decay, lr) are kept in the config and ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.demucs.hybrid import HybridUNet
from stemsplit.models.demucs.hybrid_config import HTDemucsConfig
from stemsplit.models.demucs.transformer import CrossTransformerEncoder


class HTDemucs(HybridUNet):
    """`forward(mix: [B, C, T]) -> [B, S, C, T]` for T up to `segment * samplerate`.

    With `use_train_segment` (the released models) every input is zero-padded to the
    training length, the only length the transformer's positions were trained on,
    and the output is cropped back.
    """

    def __init__(self, config: HTDemucsConfig) -> None:
        super().__init__()
        self.config = config
        self._build_unet(config)
        self.use_train_segment = config.use_train_segment
        self.bottom_channels = config.bottom_channels
        if config.bottom_channels:
            top = int(config.channels * config.growth ** (config.depth - 1))
            bottom = config.bottom_channels
            self.channel_upsampler = nn.Conv1d(top, bottom, 1)
            self.channel_downsampler = nn.Conv1d(bottom, top, 1)
            self.channel_upsampler_t = nn.Conv1d(top, bottom, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom, top, 1)
        self.crosstransformer: CrossTransformerEncoder | None = None
        transformer = config.transformer
        if transformer.layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                dim=config.transformer_channels,
                emb=transformer.emb,
                hidden_scale=transformer.hidden_scale,
                num_heads=transformer.heads,
                num_layers=transformer.layers,
                cross_first=transformer.cross_first,
                max_positions=transformer.max_positions,
                norm_in=transformer.norm_in,
                norm_in_group=int(transformer.norm_in_group),
                norm_first=transformer.norm_first,
                norm_out=transformer.norm_out,
                group_norm=int(transformer.group_norm),
                max_period=transformer.max_period,
                layer_scale=transformer.layer_scale,
                gelu=transformer.gelu,
                weight_pos_embed=transformer.weight_pos_embed,
                cape_mean_normalize=transformer.cape_mean_normalize,
            )

    @property
    def training_length(self) -> int:
        """Samples per training segment (343,980 for the released 39/5 s at 44.1 kHz)."""
        return int(self.segment * self.samplerate)

    def valid_length(self, length: int) -> int:
        """The training length (demucs: inputs are padded to it); error if `length` exceeds it."""
        if not self.use_train_segment:
            return length
        if length > self.training_length:
            raise ValueError(
                f"input of {length} samples is longer than the training segment of "
                f"{self.training_length}; use a segment of at most {self.segment} s"
            )
        return self.training_length

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross transformer between the encoders' outputs, with optional 1x1 projections."""
        if self.crosstransformer is None:
            return x, xt
        batch, _, freqs, frames = x.shape
        if self.bottom_channels:
            x = self.channel_upsampler(x.reshape(batch, -1, freqs * frames))
            x = x.view(batch, -1, freqs, frames)
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if self.bottom_channels:
            x = self.channel_downsampler(x.reshape(batch, -1, freqs * frames))
            x = x.view(batch, -1, freqs, frames)
            xt = self.channel_downsampler_t(xt)
        return x, xt

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        length = mix.shape[-1]
        padded_length = self.valid_length(length)
        if padded_length > length:
            mix = F.pad(mix, (0, padded_length - length))
        z, x, xt, stats = self._front_end(mix)
        x, xt, skips = self._encode(x, xt)
        if xt is None:
            raise ValueError("HTDemucs is always hybrid: its time branch cannot be missing")
        x, xt = self._bottleneck(x, xt)
        x, xt = self._decode(x, xt, skips)
        out = self._back_end(x, xt, z, stats, padded_length)
        return out[..., :length] if padded_length > length else out
