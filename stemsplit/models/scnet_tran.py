"""SCNet with transformer dual-path layers, as Music-Source-Separation-Training builds it.

Model type `scnet_tran`: the plain SCNet of `models/scnet.py` (rectangular-window
STFT, sparse down/up-sampling encoder and decoder, the rfft over time between
dual-path layers) whose dual-path LSTMs are replaced by transformers. Each dual-path
layer normalises (GroupNorm), runs a RoFormer-style transformer over frequency,
adds the input back, then the same over time. The transformers are those of
BS-RoFormer (`models/roformer/layers.py`: pre-norm attention with rotary positions and
a sigmoid gate per head, a GELU feed-forward of 4x width, an output RMSNorm); one
rotary embedding is shared by all time transformers and one by all frequency ones.

Yaml keys: scnet's (`expand` is taken and unused, as MSST takes it) and
`tran_rotary_embedding_dim`, `tran_depth`, `tran_heads`, `tran_dim_head`,
`tran_attn_dropout`, `tran_ff_dropout` (inference: unused), `tran_flash_attn` (MSST's
attention backend choice; the same softmax attention either way).

State (besides scnet's encoder and decoder, and `first_conv` [dims[0], dims[0], 1, 1], a
1x1 conv MSST builds and never calls; layer n of width w = dims[-1] *
(2 if n odd else 1), i the transformer depth index, h heads, d dim_head):
- `separation_net.dp_modules.{n}.norm_layers.{0,1}` GroupNorm w
- `separation_net.dp_modules.{n}.{freq_layer,time_layer}.layers.{i}.0`: `norm.gamma` [w],
  `to_qkv` [3hd, w], `to_gates` [h, w] + bias, `to_out.0` [w, hd],
  `rotary_embed.freqs` [rotary_dim // 2]
- `...layers.{i}.1.net.{0: RMSNorm w, 1: Linear [4w, w], 4: Linear [w, 4w]}`
- `separation_net.dp_modules.{n}.{freq_layer,time_layer}.norm.gamma` [w]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo
from stemsplit.models.roformer.layers import RotaryEmbedding, Transformer
from stemsplit.models.scnet import FAMILY, SCNet, SCNetConfig, _DualPathStack, parse_scnet

MODEL_TYPE = "scnet_tran"
_PREFIX = "tran_"


@dataclass(frozen=True)
class TranConfig:
    """The `tran_*` keys of MSST's SCNet_Tran (without the prefix; MSST's defaults)."""

    rotary_embedding_dim: int = 64
    depth: int = 1
    heads: int = 8
    dim_head: int = 64
    attn_dropout: float = 0.0
    ff_dropout: float = 0.0
    flash_attn: bool = False


class _PartialRotary(RotaryEmbedding):
    """rotary-embedding-torch rotates the first `dim` features of each head and leaves
    the rest as they are: here the remaining pairs turn by angle 0."""

    def __init__(self, dim: int, dim_head: int) -> None:
        super().__init__(dim)
        self.pairs = dim_head // 2

    def rotations(self, seq_len: int) -> torch.Tensor:
        turns = super().rotations(seq_len)
        missing = self.pairs - turns.shape[-1]
        if missing <= 0:
            return turns
        return torch.cat([turns, turns.new_ones(seq_len, missing)], dim=-1)


class _DualPathTransformer(nn.Module):
    """Transformer over frequency then over time, each residual: [B, C, F, T] -> same."""

    def __init__(
        self, channels: int, time_rotary: RotaryEmbedding, freq_rotary: RotaryEmbedding,
        tran: TranConfig,
    ) -> None:  # fmt: skip
        super().__init__()
        self.norm_layers = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(2))
        self.time_layer = Transformer(channels, tran.depth, tran.heads, tran.dim_head,
                                      time_rotary, norm_output=True)  # fmt: skip
        self.freq_layer = Transformer(channels, tran.depth, tran.heads, tran.dim_head,
                                      freq_rotary, norm_output=True)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, bins, frames = x.shape
        y = self.norm_layers[0](x).permute(0, 3, 2, 1).reshape(batch * frames, bins, channels)
        y = self.freq_layer(y).view(batch, frames, bins, channels)
        x = y.permute(0, 3, 2, 1) + x
        y = self.norm_layers[1](x).permute(0, 2, 3, 1).reshape(batch * bins, frames, channels)
        y = self.time_layer(y).view(batch, bins, frames, channels)
        return y.permute(0, 3, 1, 2) + x


class _SeparationNetTran(_DualPathStack):
    """scnet's separation net (the rfft / irfft over time between layers) with
    transformer dual-path layers."""

    def __init__(self, channels: int, num_layers: int, tran: TranConfig) -> None:
        super().__init__()
        time_rotary = _PartialRotary(tran.rotary_embedding_dim, tran.dim_head)
        freq_rotary = _PartialRotary(tran.rotary_embedding_dim, tran.dim_head)
        widths = [channels * (2 if index % 2 else 1) for index in range(num_layers)]
        self.dp_modules = nn.ModuleList(
            _DualPathTransformer(width, time_rotary, freq_rotary, tran) for width in widths
        )


class SCNetTran(SCNet):
    """SCNet whose separation net is `_SeparationNetTran` (module docstring)."""

    def __init__(
        self,
        config: SCNetConfig,
        tran: TranConfig,
        info: ModelInfo,
    ) -> None:
        separation_net = _SeparationNetTran(config.dims[-1], config.num_dplayer, tran)
        super().__init__(config, info, separation_net)
        self.tran = tran
        # MSST builds it and never calls it; its weight is in every checkpoint.
        self.first_conv = nn.Conv2d(config.dims[0], config.dims[0], 1, bias=False)


def tran_config(model: Mapping[str, Any]) -> TranConfig:
    """The `tran_*` keys of MSST's `model` section, checked."""
    defaults = TranConfig()
    values = {key: model.get(_PREFIX + key, default) for key, default in vars(defaults).items()}
    parsed = TranConfig(**values)
    sizes = (parsed.rotary_embedding_dim, parsed.depth, parsed.heads, parsed.dim_head)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        raise ModelError(
            f"{FAMILY} config: model.tran_rotary_embedding_dim, tran_depth, tran_heads and "
            "tran_dim_head must be positive integers"
        )
    if parsed.dim_head % 2:
        raise ModelError(f"{FAMILY} config: model.tran_dim_head must be even")
    if parsed.rotary_embedding_dim > parsed.dim_head:
        raise ModelError(
            f"{FAMILY} config: model.tran_rotary_embedding_dim {parsed.rotary_embedding_dim} "
            f"exceeds tran_dim_head {parsed.dim_head} (rotary positions rotate head features)"
        )
    for key in ("attn_dropout", "ff_dropout"):
        value = getattr(parsed, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ModelError(f"{FAMILY} config: model.tran_{key} must be a number in [0, 1)")
    if not isinstance(parsed.flash_attn, bool):
        raise ModelError(f"{FAMILY} config: model.tran_flash_attn must be true or false")
    return parsed


def build_scnet_tran(model_type: str, config: Mapping[str, Any]) -> SCNetTran:
    """An untrained SCNet Tran from an MSST yaml (`model_type` `scnet_tran`)."""
    if model_type != MODEL_TYPE:
        raise ModelError(f"build_scnet_tran builds {MODEL_TYPE}, not {model_type!r}")
    model = msst_config.section(config, "model", FAMILY, required=True)
    tran = tran_config(model)
    tran_keys = {_PREFIX + key for key in TranConfig.__dataclass_fields__}
    plain = {**config, "model": {k: v for k, v in model.items() if k not in tran_keys}}
    # scnet's reader checks the rest (unknown keys refused) and gives the stems, rate and
    # recipe.
    parts = parse_scnet(plain)
    return SCNetTran(parts.config, tran, parts.info)
