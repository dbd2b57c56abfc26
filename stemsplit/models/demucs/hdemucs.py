"""HDemucs: Hybrid Demucs v3 (Défossez 2021), as in demucs 4.1 `hdemucs.py`.

The hybrid U-Net of `hybrid.py` without a transformer: depth 6 by default, the
last two layers are time convolutions after the branches merged, whose DConv
branches carry a BLSTM and local attention. Used by `hdemucs_mmi` and the MDX bags.
Constructor keywords and defaults are demucs'; inference only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stemsplit.models.demucs.hybrid import HybridUNet


class HDemucs(HybridUNet):
    """`forward(mix: [B, C, T]) -> [B, S, C, T]`, any length T (padding is internal)."""

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
        depth: int = 6,
        rewrite: bool = True,
        hybrid: bool = True,
        hybrid_old: bool = False,
        multi_freqs: list[float] | None = None,
        multi_freqs_depth: int = 2,
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
        dconv_comp: float = 4,
        dconv_attn: int = 4,
        dconv_lstm: int = 4,
        dconv_init: float = 1e-4,
        rescale: float = 0.1,
        samplerate: int = 44100,
        segment: float = 4 * 10,
    ) -> None:
        super().__init__()
        if hybrid and wiener_iters != end_iters:
            raise ValueError("a hybrid HDemucs needs wiener_iters == end_iters")
        self._build_unet(
            sources=list(sources), audio_channels=audio_channels, channels=channels,
            channels_time=channels_time, growth=growth, nfft=nfft, wiener_iters=wiener_iters,
            cac=cac, depth=depth, rewrite=rewrite, hybrid=hybrid, hybrid_old=hybrid_old,
            multi_freqs=multi_freqs, multi_freqs_depth=multi_freqs_depth, freq_emb=freq_emb,
            emb_scale=emb_scale, kernel_size=kernel_size, time_stride=time_stride,
            stride=stride, context=context, context_enc=context_enc, norm_starts=norm_starts,
            norm_groups=norm_groups, dconv_mode=dconv_mode, dconv_depth=dconv_depth,
            dconv_comp=dconv_comp, dconv_attn=dconv_attn, dconv_lstm=dconv_lstm,
            dconv_init=dconv_init, samplerate=samplerate, segment=segment,
        )  # fmt: skip

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
