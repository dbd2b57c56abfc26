"""BS-Conformer and Mel-Band Conformer (MSST's `bs_conformer` / `mel_band_conformer`):
the RoFormer networks with conformer blocks in place of the time and band transformers.

A conformer block (Gulati et al. 2020), as MSST writes it: a half-step feed-forward,
the RoFormer's attention (rotary, gated), a convolution module (RMSNorm, pointwise
conv to twice the inner width and GLU, depthwise conv, BatchNorm, SiLU, pointwise
conv), another half-step feed-forward, each residual, then an RMSNorm. The block
stacks have no output norm. Otherwise as the RoFormers (network.py), with two
differences of MSST's conformer code: Mel-Band Conformer has neither a per-stack nor
a final norm (BS-Conformer keeps BS-RoFormer's `final_norm`), and its band MLPs have
`mask_estimator_depth` Linear layers, as BS's (Mel-Band RoFormer's have one more).
The optional linear-attention transformer before each block is the RoFormer's, with
no output norm.

Key names follow MSST's so its checkpoints load strictly. Inference only: BatchNorm
uses its running statistics whatever the module's mode.

Axis legend: b batch, n sequence (time frames or bands), d features, i inner width.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.base import ModelInfo
from stemsplit.models.ops import fast_linear, fast_linear_add
from stemsplit.models.roformer.bs_roformer import BSRoformer
from stemsplit.models.roformer.config import (
    BSRoformerConfig,
    ConformerConfig,
    MelBandRoformerConfig,
    TrunkConfig,
)
from stemsplit.models.roformer.layers import (
    Attention,
    FeedForward,
    RMSNorm,
    RotaryEmbedding,
    Transformer,
)
from stemsplit.models.roformer.mel_band_roformer import MelBandRoformer


class MacaronFeedForward(nn.Module):
    """Half-step feed-forward: `x + ff(x) / 2` (MSST's MacaronFF, which holds `ff`)."""

    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.ff = FeedForward(dim, mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.ff(x)


class ConvModule(nn.Module):
    """RMSNorm, pointwise conv + GLU, depthwise conv, BatchNorm, SiLU, pointwise conv."""

    def __init__(self, dim: int, expansion_factor: int, kernel_size: int) -> None:
        super().__init__()
        inner = dim * expansion_factor
        # MSST's Sequential: indices 1 and 8 are einops Rearranges (b n d <-> b d n),
        # the trailing Dropout (9) is omitted.
        self.net = nn.Sequential(
            RMSNorm(dim),
            nn.Identity(),
            nn.Conv1d(dim, inner * 2, 1),
            nn.GLU(dim=1),
            nn.Conv1d(inner, inner, kernel_size, padding=kernel_size // 2, groups=inner),
            nn.BatchNorm1d(inner),
            nn.SiLU(),
            nn.Conv1d(inner, dim, 1),
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x: [b, n, d] -> [b, n, d], plus `residual` when given. The pointwise convs
        run as Linear layers on [b, n, d], so only the depthwise conv transposes."""
        norm, _, expand, _, depthwise, batch_norm, _, project = self.net
        expand, project = cast(nn.Conv1d, expand), cast(nn.Conv1d, project)
        norm_layer = cast(nn.BatchNorm1d, batch_norm)
        hidden = fast_linear(norm(x), expand.weight.squeeze(-1), expand.bias)
        hidden = depthwise(F.glu(hidden, dim=-1).transpose(1, 2))  # [b, i, n]
        hidden = F.batch_norm(
            hidden,
            norm_layer.running_mean,
            norm_layer.running_var,
            norm_layer.weight,
            norm_layer.bias,
            training=False,
            eps=norm_layer.eps,
        )
        hidden = F.silu(hidden).transpose(1, 2).contiguous()  # [b, n, i]
        weight = project.weight.squeeze(-1)
        if residual is None:
            return fast_linear(hidden, weight, project.bias)
        return fast_linear_add(hidden, weight, project.bias, residual)


class ConformerBlock(nn.Module):
    """Half feed-forward, attention, convolution, half feed-forward, RMSNorm."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding,
        block: ConformerConfig,
    ) -> None:
        super().__init__()
        self.ff1 = MacaronFeedForward(dim, block.ff_mult)
        self.attn = Attention(dim, heads, dim_head, rotary_embed)
        self.conv = ConvModule(dim, block.conv_expansion_factor, block.conv_kernel_size)
        self.ff2 = MacaronFeedForward(dim, block.ff_mult)
        self.out_norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, n, d] -> [b, n, d]."""
        x = self.ff1(x)
        x = self.attn(x, residual=x)
        x = self.conv(x, residual=x)
        return cast(torch.Tensor, self.out_norm(self.ff2(x)))


class Conformer(nn.Module):
    """`depth` conformer blocks over a sequence (MSST's Conformer; its output norm is
    always off in the conformer networks, so there is none)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding,
        block: ConformerConfig,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConformerBlock(dim, heads, dim_head, rotary_embed, block) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, n, d] -> [b, n, d]."""
        for layer in self.layers:
            x = layer(x)
        return x


def conformer_layers(trunk: TrunkConfig, block: ConformerConfig) -> nn.ModuleList:
    """The axial trunk: per block an optional linear-attention transformer, then a
    time and a band conformer (one rotary embedding per axis, shared by all blocks)."""
    time_rotary = RotaryEmbedding(trunk.dim_head)
    freq_rotary = RotaryEmbedding(trunk.dim_head)
    layers = nn.ModuleList()
    for _ in range(trunk.depth):
        stacks = nn.ModuleList()
        if trunk.linear_transformer_depth > 0:
            stacks.append(Transformer(trunk.dim, trunk.linear_transformer_depth, trunk.heads,
                                      trunk.dim_head, None, norm_output=False))  # fmt: skip
        for depth, rotary in [
            (trunk.time_transformer_depth, time_rotary),
            (trunk.freq_transformer_depth, freq_rotary),
        ]:
            stacks.append(Conformer(trunk.dim, depth, trunk.heads, trunk.dim_head, rotary, block))
        layers.append(stacks)
    return layers


# Both networks build their RoFormer with no blocks (trunk depth 0), then put the
# conformer trunk in its place: the axial pass (RoformerNetwork._transform) is the same.


class BSConformer(BSRoformer):
    """BS-Conformer; `forward(mix [b, c, t]) -> [b, stems, c, t]`."""

    bf16_trunk = False  # its convolution module is not cast: autocast handles it

    def __init__(self, config: BSRoformerConfig, block: ConformerConfig, info: ModelInfo) -> None:
        super().__init__(replace(config, trunk=replace(config.trunk, depth=0)), info)
        self.config = config
        self.trunk_config = config.trunk
        self.conformer_config = block
        self.layers = conformer_layers(config.trunk, block)


class MelBandConformer(MelBandRoformer):
    """Mel-Band Conformer; `forward(mix [b, c, t]) -> [b, stems, c, t]`."""

    bf16_trunk = False  # its convolution module is not cast: autocast handles it
    extra_mask_layers = 0

    def __init__(
        self, config: MelBandRoformerConfig, block: ConformerConfig, info: ModelInfo
    ) -> None:
        # With no blocks MelBandRoformer has neither a final norm nor stack norms, as
        # this network.
        super().__init__(replace(config, trunk=replace(config.trunk, depth=0)), info)
        self.config = config
        self.trunk_config = config.trunk
        self.conformer_config = block
        self.layers = conformer_layers(config.trunk, block)
