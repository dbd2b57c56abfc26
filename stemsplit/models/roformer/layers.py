"""Building blocks shared by BS-RoFormer and Mel-Band RoFormer (written once).

Module and parameter names follow MSST's `models/bs_roformer/*.py` so its `.ckpt`
state_dicts load strictly; where MSST has a parameter-free `nn.Dropout` inside an
`nn.Sequential`, an `nn.Identity` keeps the indices (and so the key names) the same.
Inference only: no dropout, no loss.

Axis legend: b batch, n sequence (time frames or bands), h heads, d features.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.ops import fast_attention, fast_linear, fast_linear_add
from stemsplit.models.roformer.polar import PolarEmbedding


class RMSNorm(nn.Module):
    """`F.normalize(x) * sqrt(dim) * gamma` over the last axis (MSST's RMSNorm)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * (self.gamma * self.scale).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding on interleaved pairs, as rotary-embedding-torch.

    `freqs` is a frozen parameter (MSST checkpoints store it, and parameter counts
    include it); one instance is shared by all time (or all band) attentions.
    """

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def rotations(self, seq_len: int) -> torch.Tensor:
        """exp(i * position * freq) as complex64, [seq_len, dim // 2]."""
        positions = torch.arange(seq_len, device=self.freqs.device, dtype=self.freqs.dtype)
        angles = torch.outer(positions, self.freqs)
        return torch.polar(torch.ones_like(angles), angles)


def apply_rotary(t: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (t[2i], t[2i+1]) of `t` [..., n, d] by the angle of (n, i).

    The pair is read as the complex number t[2i] + i t[2i+1]: one complex product
    instead of rotary-embedding-torch's rotate_half, cos and sin passes.
    """
    pairs = torch.view_as_complex(t.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotations).flatten(-2)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and a sigmoid gate per head.

    Given a `PolarEmbedding` instead (MSST's `use_pope`), positions are PoPE's and the
    module is stored as `pope_embed` (MSST's key) with `rotary_embed` None.

    `value_residual_mix` (MSST's experimental RoFormers, `learned_value_residual_mix`):
    the values are moved towards a given `value_residual` (the first layer's values)
    by a learned sigmoid weight per head and token.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding | PolarEmbedding,
        value_residual_mix: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.rotary_embed: RotaryEmbedding | None = None
        self.pope_embed: PolarEmbedding | None = None
        if isinstance(rotary_embed, PolarEmbedding):
            self.pope_embed = rotary_embed
        else:
            self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_value_residual_mix = nn.Linear(dim, heads) if value_residual_mix else None
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x: [b, n, dim] -> [b, n, dim], plus `residual` when given (fused)."""
        return self.forward_values(x, residual=residual)[0]

    def forward_values(
        self,
        x: torch.Tensor,
        value_residual: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [b, n, dim] -> (output [b, n, dim] (+ `residual`), this layer's values
        [b, h, n, d])."""
        batch, seq_len, _ = x.shape
        x = self.norm(x)
        # [b, n, (3 h d)] -> [3, b, h, n, d]
        qkv = fast_linear(x, self.to_qkv.weight).view(batch, seq_len, 3, self.heads,
                                                      self.dim_head)  # fmt: skip
        qkv = qkv.permute(2, 0, 3, 1, 4)
        values = qkv[2]
        if self.to_value_residual_mix is not None:
            if value_residual is None:
                raise ValueError("this attention mixes in a value residual; none was given")
            gate = self.to_value_residual_mix
            mix = fast_linear(x, gate.weight, gate.bias).sigmoid().transpose(1, 2).unsqueeze(-1)
            values = qkv[2].lerp(value_residual, mix)  # [b, h, n, d]
        if self.pope_embed is not None:
            query, key = self.pope_embed.polar(qkv[0], qkv[1])
            out = fast_attention(query.to(x.dtype), key.to(x.dtype), values)
        else:
            assert self.rotary_embed is not None
            query_key = apply_rotary(qkv[:2].float(), self.rotary_embed.rotations(seq_len))
            query_key = query_key.to(x.dtype)
            out = fast_attention(query_key[0], query_key[1], values)
        gates = fast_linear(x, self.to_gates.weight, self.to_gates.bias).sigmoid()  # [b, n, h]
        out = out.transpose(1, 2) * gates.unsqueeze(-1)  # [b, n, h, d]
        out = out.reshape(batch, seq_len, self.heads * self.dim_head)
        weight = cast(nn.Linear, self.to_out[0]).weight
        if residual is None:
            return fast_linear(out, weight), qkv[2]
        return fast_linear_add(out, weight, None, residual), qkv[2]


class LinearAttention(nn.Module):
    """Cross-covariance attention over features (El-Nouby et al. 2021, XCiT), as MSST.

    Queries and keys are l2-normalised along the tokens; the softmax runs over the
    `d` axis of each head with scale 8 times a learned per-head temperature.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0) -> None:
        super().__init__()
        self.heads = heads
        self.dim_head = dim_head
        self.scale = scale
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, heads * dim_head * 3, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        # Index 0 is MSST's einops Rearrange (no parameters).
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, n, dim] -> [b, n, dim]."""
        batch, seq_len, _ = x.shape
        x = self.norm(x)
        # [b, n, (3 h d)] -> [3, b, h, d, n]
        qkv = run_sequential(self.to_qkv, x).view(batch, seq_len, 3, self.heads, self.dim_head)
        query, key, value = qkv.permute(2, 0, 3, 4, 1)
        query = F.normalize(query, dim=-1) * self.temperature.exp().to(query.dtype)
        key = F.normalize(key, dim=-1)
        out = F.scaled_dot_product_attention(query, key, value, scale=self.scale)
        out = out.permute(0, 3, 1, 2).reshape(batch, seq_len, self.heads * self.dim_head)
        return run_sequential(self.to_out, out)


class FeedForward(nn.Module):
    """Pre-norm GELU MLP: dim -> dim * mult -> dim."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = dim * mult
        # Indices 3 and 5 of MSST's Sequential are Dropouts; 5 is last, so omitted.
        self.net = nn.Sequential(
            RMSNorm(dim), nn.Linear(dim, inner), nn.GELU(), nn.Identity(), nn.Linear(inner, dim)
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """x: [b, n, dim] -> [b, n, dim], plus `residual` when given (fused into the last
        matmul, as the exact GELU into the first)."""
        norm, first, _, _, last = self.net
        first, last = cast(nn.Linear, first), cast(nn.Linear, last)
        hidden = fast_linear(norm(x), first.weight, first.bias, gelu=True)
        if residual is None:
            return fast_linear(hidden, last.weight, last.bias)
        return fast_linear_add(hidden, last.weight, last.bias, residual)


class Transformer(nn.Module):
    """`depth` pre-norm residual (attention, feed-forward) pairs, optional output norm.

    With `rotary_embed` (rotary or PoPE positions) the attention is softmax attention
    over the sequence; with None it is `LinearAttention` (MSST's `linear_attn=True`). `value_residual_mix`
    gives the attentions a learned value-residual mix (experimental RoFormers).
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        dim_head: int,
        rotary_embed: RotaryEmbedding | PolarEmbedding | None,
        norm_output: bool,
        value_residual_mix: bool = False,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            attention: nn.Module
            if rotary_embed is None:
                attention = LinearAttention(dim, heads, dim_head)
            else:
                attention = Attention(dim, heads, dim_head, rotary_embed, value_residual_mix)
            self.layers.append(nn.ModuleList([attention, FeedForward(dim)]))
        self.norm: nn.Module = RMSNorm(dim) if norm_output else nn.Identity()

    def blocks(self) -> Iterator[tuple[Attention | LinearAttention, FeedForward]]:
        """The (attention, feed-forward) pair of each layer, typed (`layers` holds
        them as plain ModuleLists so the state_dict keys stay MSST's)."""
        for layer in self.layers:
            attention, feed_forward = cast(nn.ModuleList, layer)
            yield cast("Attention | LinearAttention", attention), cast(FeedForward, feed_forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, n, dim] -> [b, n, dim]."""
        for attention, feed_forward in self.blocks():
            if isinstance(attention, Attention):
                x = attention(x, residual=x)
            else:
                x = attention(x) + x
            x = feed_forward(x, residual=x)
        return self.norm(x)

    def forward_values(
        self, x: torch.Tensor, value_residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MSST's experimental Transformer: x [b, n, dim] -> (x, first layer's values).

        Without `value_residual` (the trunk's first block) the layers are residual as
        in `forward`. With one (every later block) MSST's experimental code adds no
        residuals: each attention's and feed-forward's output replaces x (its
        residuals live in hyper-connection wrappers, absent at num_residual_streams 1).
        """
        first_values: torch.Tensor | None = None
        for attention, feed_forward in self.blocks():
            # Value residuals need softmax attention (a rotary embedding).
            assert isinstance(attention, Attention), "value residuals need a rotary_embed"
            out, values = attention.forward_values(x, value_residual)
            first_values = values if first_values is None else first_values
            if value_residual is None:
                x = out + x
                x = feed_forward(x) + x
            else:
                x = feed_forward(out)
        assert first_values is not None  # depth >= 1
        return self.norm(x), first_values


class BandSplit(nn.Module):
    """Per band: RMSNorm and Linear from the band's (bin, channel, re/im) values to dim."""

    def __init__(self, dim: int, dim_inputs: Sequence[int]) -> None:
        super().__init__()
        self.dim_inputs = tuple(dim_inputs)
        self.to_features = nn.ModuleList(
            nn.Sequential(RMSNorm(dim_in), nn.Linear(dim_in, dim)) for dim_in in self.dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, t, sum(dim_inputs)] -> [b, t, bands, dim]."""
        bands = x.split(self.dim_inputs, dim=-1)
        return torch.stack([run_sequential(cast(nn.Sequential, net), band)
                            for band, net in zip(bands, self.to_features)], dim=-2)  # fmt: skip


def run_sequential(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`net(x)`, its Linear layers (at any depth) through `fast_linear`."""
    for module in net:
        if isinstance(module, nn.Linear):
            x = fast_linear(x, module.weight, module.bias)
        elif isinstance(module, nn.Sequential):
            x = run_sequential(module, x)
        else:
            x = module(x)
    return x


def _mlp(dim_in: int, dim_hidden: int, dim_out: int, num_layers: int) -> nn.Sequential:
    """`num_layers` Linear layers with Tanh between them (MSST's MLP)."""
    dims = (dim_in, *((dim_hidden,) * (num_layers - 1)), dim_out)
    modules: list[nn.Module] = []
    for index, (layer_in, layer_out) in enumerate(itertools.pairwise(dims)):
        if index > 0:
            modules.append(nn.Tanh())
        modules.append(nn.Linear(layer_in, layer_out))
    return nn.Sequential(*modules)


class MaskEstimator(nn.Module):
    """Per band: an MLP to twice the band's input size, then a GLU (one stem's mask).

    MSST's BS-RoFormer MLP has `mask_estimator_depth` Linear layers and its
    Mel-Band RoFormer one more; the caller passes the count as `num_layers`.
    """

    def __init__(
        self, dim: int, dim_inputs: Sequence[int], num_layers: int, mlp_expansion_factor: int
    ) -> None:
        super().__init__()
        hidden = dim * mlp_expansion_factor
        self.to_freqs = nn.ModuleList(
            nn.Sequential(_mlp(dim, hidden, dim_in * 2, num_layers), nn.GLU(dim=-1))
            for dim_in in dim_inputs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, t, bands, dim] -> [b, t, sum(dim_inputs)]."""
        bands = x.unbind(dim=-2)
        return torch.cat([run_sequential(cast(nn.Sequential, net), band)
                          for band, net in zip(bands, self.to_freqs)], dim=-1)  # fmt: skip
