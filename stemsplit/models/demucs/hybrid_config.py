"""Configs of the hybrid Demucs models: HDemucs (v3) and HTDemucs (v4).

Both share the two-branch U-Net's fields (`HybridConfig`, HDemucs' defaults);
HTDemucs changes some defaults and adds its cross transformer as a nested part.
Field names are demucs 4.1's keywords, less their `dconv_`/`t_` prefix (see `config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from stemsplit.models.demucs.config import CheckedConfig, CommonConfig, DConvConfig, check

_HYBRID_HEAD = (
    "sources audio_channels channels channels_time growth nfft wiener_iters end_iters"
    " wiener_residual cac depth rewrite"
)
_HYBRID_LAYERS = (
    "multi_freqs multi_freqs_depth freq_emb emb_scale emb_smooth kernel_size time_stride"
    " stride context context_enc norm_starts norm_groups dconv_mode dconv_depth dconv_comp"
)

_V3_DCONV = DConvConfig(attn=4, lstm=4)  # BLSTM and attention from layer 4 on
_V4_DCONV = DConvConfig(compress=8, init=1e-3)  # neither


@dataclass(frozen=True)
class HybridConfig(CommonConfig):
    """The hybrid U-Net: a spectrogram branch and a waveform branch, merged at the bottom."""

    channels: int = 48
    channels_time: int | None = None  # the time branch's first width (default: channels)
    growth: float = 2  # channel growth per layer
    nfft: int = 4096
    wiener_iters: int = 0  # must be >= 0 with cac (Wiener filtering is not supported)
    end_iters: int = 0  # Wiener iterations in training: must equal wiener_iters
    wiener_residual: bool = False  # Wiener filtering only
    cac: bool = True  # complex as channels
    depth: int = 6
    rewrite: bool = True  # 1x1 conv + GLU in each layer
    hybrid: bool = True  # with the time branch
    hybrid_old: bool = False  # the first hybrid models' STFT framing
    multi_freqs: tuple[float, ...] | None = None  # band split ratios (MultiWrap)
    multi_freqs_depth: int = 2  # layers with band splits
    freq_emb: float = 0.2  # frequency embedding weight (0: none)
    emb_scale: float = 10
    emb_smooth: bool = True  # embedding init (training only)
    kernel_size: int = 8
    time_stride: int = 2  # stride of the time convs below the last freq layer
    stride: int = 4
    context: int = 1  # decoders' rewrite context
    context_enc: int = 0  # encoders' rewrite context
    norm_starts: int = 4  # GroupNorm from this layer on
    norm_groups: int = 4
    dconv: DConvConfig = _V3_DCONV

    def _validate(self) -> None:
        super()._validate()
        for name in ("channels", "nfft", "depth", "kernel_size", "time_stride", "stride",
                     "norm_groups"):  # fmt: skip
            value = getattr(self, name)
            check(value > 0, self, f"{name} must be positive, got {value}")
        check(self.growth > 0, self, f"growth must be positive, got {self.growth}")
        check(self.channels_time is None or self.channels_time > 0, self, "channels_time > 0")
        check(min(self.context, self.context_enc, self.norm_starts) >= 0, self,
               "context, context_enc and norm_starts must not be negative")  # fmt: skip
        check(all(0 < ratio < 1 for ratio in self.multi_freqs or ()), self,
               f"multi_freqs must be ratios in (0, 1), got {self.multi_freqs}")  # fmt: skip
        check(self.cac or self.wiener_iters < 0, self,
               "Wiener-filtered (non-cac) Demucs models are not supported")  # fmt: skip
        check(self.hybrid or not self.hybrid_old, self, "hybrid_old needs hybrid=True")
        check(not self.hybrid or self.wiener_iters == self.end_iters, self,
               "a hybrid model needs wiener_iters == end_iters")  # fmt: skip


@dataclass(frozen=True)
class HDemucsConfig(HybridConfig):
    """Hybrid Demucs v3 (demucs 4.1 `hdemucs.HDemucs`)."""

    KLASS: ClassVar[str] = "HDemucs"
    KWARGS: ClassVar[tuple[str, ...]] = tuple(
        f"{_HYBRID_HEAD} hybrid hybrid_old {_HYBRID_LAYERS} dconv_attn dconv_lstm dconv_init"
        " rescale samplerate segment".split()
    )


@dataclass(frozen=True)
class SparseAttentionConfig(CheckedConfig):
    """HTDemucs' sparse attention (xformers; never released): accepted only when off."""

    self_attn: bool = False
    cross_attn: bool = False
    mask_type: str = "diag"
    mask_random_seed: int = 42
    attn_window: int = 500
    global_window: int = 100
    sparsity: float = 0.95
    auto_sparsity: bool = False

    def _validate(self) -> None:
        check(not (self.self_attn or self.cross_attn or self.auto_sparsity), self,
               "sparse-attention HTDemucs models (xformers) are not supported")  # fmt: skip


@dataclass(frozen=True)
class TransformerConfig(CheckedConfig):
    """HTDemucs' cross-domain transformer (demucs' `t_*` keywords)."""

    layers: int = 5  # 0: no transformer
    emb: str = "sin"  # positions of the time stream: sin, cape or scaled
    hidden_scale: float = 4.0  # feed-forward width / dim
    heads: int = 8
    dropout: float = 0.0  # training only
    max_positions: int = 10000  # of the learnt ("scaled") positions
    norm_in: bool = True
    norm_in_group: bool = False
    group_norm: bool = False
    norm_first: bool = True
    norm_out: bool = True
    max_period: float = 10000.0
    weight_decay: float = 0.0  # training only
    lr: float | None = None  # training only
    layer_scale: bool = True
    gelu: bool = True
    weight_pos_embed: float = 1.0
    sin_random_shift: int = 0  # training only
    cape_mean_normalize: bool = True
    cape_augment: bool = True  # training only
    cape_glob_loc_scale: tuple[float, ...] = (5000.0, 1.0, 1.4)  # training only
    sparse: SparseAttentionConfig = SparseAttentionConfig()
    cross_first: bool = False

    def _validate(self) -> None:
        check(self.layers >= 0, self, f"layers must not be negative, got {self.layers}")
        check(self.heads > 0, self, f"heads must be positive, got {self.heads}")
        check(self.hidden_scale > 0, self, "hidden_scale must be positive")
        check(self.emb in ("sin", "cape", "scaled"), self, f"unknown emb {self.emb!r}")
        check(self.max_positions > 0, self, "max_positions must be positive")


@dataclass(frozen=True)
class HTDemucsConfig(HybridConfig):
    """Hybrid Transformer Demucs v4 (demucs 4.1 `htdemucs.HTDemucs`): always hybrid."""

    KLASS: ClassVar[str] = "HTDemucs"
    KWARGS: ClassVar[tuple[str, ...]] = tuple(
        f"{_HYBRID_HEAD} {_HYBRID_LAYERS} dconv_init bottom_channels t_layers t_emb"
        " t_hidden_scale t_heads t_dropout t_max_positions t_norm_in t_norm_in_group"
        " t_group_norm t_norm_first t_norm_out t_max_period t_weight_decay t_lr"
        " t_layer_scale t_gelu t_weight_pos_embed t_sin_random_shift t_cape_mean_normalize"
        " t_cape_augment t_cape_glob_loc_scale t_sparse_self_attn t_sparse_cross_attn"
        " t_mask_type t_mask_random_seed t_sparse_attn_window t_global_window t_sparsity"
        " t_auto_sparsity t_cross_first rescale samplerate segment use_train_segment".split()
    )

    depth: int = 4
    multi_freqs_depth: int = 3
    dconv: DConvConfig = _V4_DCONV
    segment: float = 10
    bottom_channels: int = 0  # 1x1 projection around the transformer (0: none)
    transformer: TransformerConfig = TransformerConfig()
    use_train_segment: bool = True  # pad every input to the training length

    @property
    def transformer_channels(self) -> int:
        """Width of the transformer's tokens."""
        return self.bottom_channels or int(self.channels * self.growth ** (self.depth - 1))

    def _validate(self) -> None:
        super()._validate()
        check(self.hybrid and not self.hybrid_old, self, "HTDemucs is always hybrid (v4)")
        check(self.bottom_channels >= 0, self, "bottom_channels must not be negative")
        heads = self.transformer.heads
        width = self.transformer_channels
        check(not self.transformer.layers or width % heads == 0, self,
               f"transformer width {width} not divisible by {heads} heads")  # fmt: skip
