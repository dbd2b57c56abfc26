"""HTDemucs: Hybrid Transformer Demucs (demucs v4, Rouard et al. 2023).

The hybrid U-Net of `hybrid.py` with a cross-domain transformer between its
encoders and decoders. Constructor keywords and defaults are demucs 4.1's, so a
checkpoint's stored kwargs rebuild the model; its state_dict loads with strict=True.
Inference only: the training-time options (dropout, random shifts, CAPE
augmentation, weight decay, lr) are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.demucs.hybrid import HybridUNet
from stemsplit.models.demucs.transformer import CrossTransformerEncoder


class HTDemucs(HybridUNet):
    """`forward(mix: [B, C, T]) -> [B, S, C, T]` for T up to `segment * samplerate`.

    With `use_train_segment` (the released models) every input is zero-padded to the
    training length, the only length the transformer's positions were trained on,
    and the output is cropped back.
    """

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        channels: int = 48,
        channels_time: int | None = None,
        growth: float = 2,
        nfft: int = 4096,
        wiener_iters: int = 0,
        end_iters: int = 0,
        wiener_residual: bool = False,
        cac: bool = True,
        depth: int = 4,
        rewrite: bool = True,
        multi_freqs: list[float] | None = None,
        multi_freqs_depth: int = 3,
        freq_emb: float = 0.2,
        emb_scale: float = 10,
        emb_smooth: bool = True,
        kernel_size: int = 8,
        time_stride: int = 2,
        stride: int = 4,
        context: int = 1,
        context_enc: int = 0,
        norm_starts: int = 4,
        norm_groups: int = 4,
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 8,
        dconv_init: float = 1e-3,
        bottom_channels: int = 0,
        t_layers: int = 5,
        t_emb: str = "sin",
        t_hidden_scale: float = 4.0,
        t_heads: int = 8,
        t_dropout: float = 0.0,
        t_max_positions: int = 10000,
        t_norm_in: bool = True,
        t_norm_in_group: bool = False,
        t_group_norm: bool = False,
        t_norm_first: bool = True,
        t_norm_out: bool = True,
        t_max_period: float = 10000.0,
        t_weight_decay: float = 0.0,
        t_lr: float | None = None,
        t_layer_scale: bool = True,
        t_gelu: bool = True,
        t_weight_pos_embed: float = 1.0,
        t_sin_random_shift: int = 0,
        t_cape_mean_normalize: bool = True,
        t_cape_augment: bool = True,
        t_cape_glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
        t_sparse_self_attn: bool = False,
        t_sparse_cross_attn: bool = False,
        t_mask_type: str = "diag",
        t_mask_random_seed: int = 42,
        t_sparse_attn_window: int = 500,
        t_global_window: int = 100,
        t_sparsity: float = 0.95,
        t_auto_sparsity: bool = False,
        t_cross_first: bool = False,
        rescale: float = 0.1,
        samplerate: int = 44100,
        segment: float = 10,
        use_train_segment: bool = True,
    ) -> None:
        super().__init__()
        if t_sparse_self_attn or t_sparse_cross_attn or t_auto_sparsity:
            raise ValueError("sparse-attention HTDemucs models (xformers) are not supported")
        if wiener_iters != end_iters:
            raise ValueError("HTDemucs needs wiener_iters == end_iters")
        self._build_unet(
            sources=list(sources), audio_channels=audio_channels, channels=channels,
            channels_time=channels_time, growth=growth, nfft=nfft, wiener_iters=wiener_iters,
            cac=cac, depth=depth, rewrite=rewrite, hybrid=True, hybrid_old=False,
            multi_freqs=multi_freqs, multi_freqs_depth=multi_freqs_depth, freq_emb=freq_emb,
            emb_scale=emb_scale, kernel_size=kernel_size, time_stride=time_stride,
            stride=stride, context=context, context_enc=context_enc, norm_starts=norm_starts,
            norm_groups=norm_groups, dconv_mode=dconv_mode, dconv_depth=dconv_depth,
            dconv_comp=dconv_comp, dconv_attn=float("inf"), dconv_lstm=float("inf"),
            dconv_init=dconv_init, samplerate=samplerate, segment=segment,
        )  # fmt: skip
        self.use_train_segment = use_train_segment
        self.bottom_channels = bottom_channels
        transformer_channels = int(channels * growth ** (depth - 1))
        if bottom_channels:
            self.channel_upsampler = nn.Conv1d(transformer_channels, bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(bottom_channels, transformer_channels, 1)
            self.channel_upsampler_t = nn.Conv1d(transformer_channels, bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom_channels, transformer_channels, 1)
            transformer_channels = bottom_channels
        self.crosstransformer: CrossTransformerEncoder | None = None
        if t_layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                dim=transformer_channels, emb=t_emb, hidden_scale=t_hidden_scale,
                num_heads=t_heads, num_layers=t_layers, cross_first=t_cross_first,
                max_positions=t_max_positions, norm_in=t_norm_in,
                norm_in_group=int(t_norm_in_group), group_norm=int(t_group_norm),
                norm_first=t_norm_first, norm_out=t_norm_out, max_period=t_max_period,
                layer_scale=t_layer_scale, gelu=t_gelu, weight_pos_embed=t_weight_pos_embed,
                cape_mean_normalize=t_cape_mean_normalize,
            )  # fmt: skip

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
