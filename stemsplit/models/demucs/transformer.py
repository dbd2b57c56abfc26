"""The cross-domain transformer at the bottom of HTDemucs (demucs 4.1 `transformer.py`).

Two token streams, the spectral one (`[B, C, F, T1]` flattened time-major) and the
temporal one (`[B, C, T2]`), go through alternating self-attention layers (one per
stream) and cross-attention layers (each stream queries the other). Attention runs
through `ops.fast_attention` (scaled dot-product attention); parameters keep
`nn.MultiheadAttention`'s names (`in_proj_weight`, `in_proj_bias`, `out_proj`) so the
checkpoints load as is.
Only dense attention is supported (the sparse variants need xformers and were
never released).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.demucs.layers import LayerScale, fast_linear, fast_linear_add
from stemsplit.models.ops import (
    cpu_bf16_autocast,
    fast_attention,
    fold_row_scale,
    tracing,
    weight_like,
)


def sin_embedding(length: int, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """1-D sinusoidal positions, `[length, dim]`: cosines then sines."""
    positions = torch.arange(length).view(-1, 1)
    half = dim // 2
    exponents = torch.arange(half).view(1, -1) / (half - 1)
    phase = positions / (max_period**exponents)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding_2d(dim: int, height: int, width: int, max_period: float) -> torch.Tensor:
    """2-D sinusoidal positions, `[dim, height, width]`.

    The first half of the channels encodes the width (time) position, the second the
    height (frequency) one, sin/cos interleaved. Cached (the shape is fixed per model),
    but not while exporting or tracing: what is made then is not a real tensor.
    """
    if tracing():
        return _sin_embedding_2d.__wrapped__(dim, height, width, max_period)
    return _sin_embedding_2d(dim, height, width, max_period)


@functools.lru_cache(maxsize=8)
def _sin_embedding_2d(dim: int, height: int, width: int, max_period: float) -> torch.Tensor:
    if dim % 4:
        raise ValueError(f"2-D sin embedding needs a dim divisible by 4, got {dim}")
    half = dim // 2
    div_term = torch.exp(torch.arange(0.0, half, 2) * -(math.log(max_period) / half))
    phase_w = (torch.arange(0.0, width).unsqueeze(1) * div_term).t()[:, None, :]  # [h/2, 1, W]
    phase_h = (torch.arange(0.0, height).unsqueeze(1) * div_term).t()[:, :, None]  # [h/2, H, 1]
    pe = torch.zeros(dim, height, width)
    pe[0:half:2] = torch.sin(phase_w)
    pe[1:half:2] = torch.cos(phase_w)
    pe[half::2] = torch.sin(phase_h)
    pe[half + 1 :: 2] = torch.cos(phase_h)
    return pe


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm over tokens `[B, T, C]` (demucs' MyGroupNorm): with 1 group, one
    mean/std over all of a sequence's tokens and channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_groups == 1:  # one layer norm over T * C: no transposed copies
            batch, tokens, channels = x.shape
            y = F.layer_norm(x.reshape(batch, -1), (tokens * channels,), eps=self.eps)
            y = y.view(batch, tokens, channels)
            if not self.affine:
                return y
            return torch.addcmul(self.bias.to(y.dtype), y, self.weight.to(y.dtype))
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention on batch-first tokens, with nn.MultiheadAttention's parameters."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.num_heads, -1).transpose(1, 2)

    def attend(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """The heads' outputs before `out_proj`, `[B, Tq, C]`."""
        dim = query.shape[-1]
        # cast before the split: a parameter's bf16 copy is cached, a split's is not
        weight = weight_like(self.in_proj_weight, query)
        bias = weight_like(self.in_proj_bias, query)
        if query is key:
            q, k, v = fast_linear(query, weight, bias).split(dim, -1)
        else:
            w_q, w_kv = weight.split([dim, 2 * dim])
            b_q, b_kv = bias.split([dim, 2 * dim])
            q = fast_linear(query, w_q, b_q)
            k, v = fast_linear(key, w_kv, b_kv).split(dim, -1)
        out = fast_attention(self._heads(q), self._heads(k), self._heads(v))
        return out.transpose(1, 2).reshape(query.shape)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """`query: [B, Tq, C]`, `key` (also the values): `[B, Tk, C]` -> `[B, Tq, C]`."""
        return fast_linear(self.attend(query, key), self.out_proj.weight, self.out_proj.bias)


class TransformerLayer(nn.Module):
    """Self-attention (`cross=False`, demucs' MyTransformerEncoderLayer) or
    cross-attention (`cross=True`, CrossTransformerEncoderLayer) + feed-forward.

    Pre-norm (`norm_first`) with optional LayerScale and a final GroupNorm(1), or
    post-norm. Cross layers normalise the key stream with their own `norm2`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        hidden_dim: int,
        cross: bool,
        gelu: bool = True,
        group_norm: int = 0,
        norm_first: bool = False,
        norm_out: bool = False,
        layer_scale: bool = False,
        init_values: float = 1e-4,
    ) -> None:
        super().__init__()
        self.cross = cross
        self.norm_first = norm_first
        attention = Attention(dim, num_heads)
        if cross:
            self.cross_attn = attention
        else:
            self.self_attn = attention
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.activation = F.gelu if gelu else F.relu

        def norm() -> nn.Module:
            return TokenGroupNorm(int(group_norm), dim) if group_norm else nn.LayerNorm(dim)

        self.norm1 = norm()
        self.norm2 = norm()
        if cross:
            self.norm3 = norm()
        self.norm_out = TokenGroupNorm(int(norm_out), dim) if norm_first and norm_out else None
        self.gamma_1 = LayerScale(dim, init_values, True) if layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim, init_values, True) if layer_scale else nn.Identity()

    def _attend(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        if self.cross:
            return self.cross_attn(x, other)
        return self.self_attn(x, x)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))

    def _scaled(self, linear: nn.Linear, gamma: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """`linear`'s weight and bias with the LayerScale after it folded in (in fp32;
        the matmul casts them to its input's dtype)."""
        if isinstance(gamma, LayerScale):
            return fold_row_scale(linear.weight, linear.bias, gamma.scale)
        return linear.weight, linear.bias

    def _pre_norm(self, x: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        """Pre-norm layer as fused matmuls: the LayerScales are folded into the output
        projections, the residual adds and the GELU run inside the matmuls."""
        attention = self.cross_attn if self.cross else self.self_attn
        if self.cross:
            heads = attention.attend(self.norm1(x), self.norm2(other))
            ff_norm = self.norm3
        else:
            normed = self.norm1(x)
            heads = attention.attend(normed, normed)
            ff_norm = self.norm2
        weight, bias = self._scaled(attention.out_proj, self.gamma_1)
        x = fast_linear_add(heads, weight, bias, x)
        h = ff_norm(x)
        weight, bias = self.linear1.weight, self.linear1.bias
        if self.activation is F.gelu:
            h = fast_linear(h, weight, bias, gelu=True)
        else:
            h = self.activation(fast_linear(h, weight, bias))
        weight, bias = self._scaled(self.linear2, self.gamma_2)
        x = fast_linear_add(h, weight, bias, x)
        if self.norm_out is not None:
            x = self.norm_out(x)
        return x

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """`x: [B, T, C]`; `other: [B, S, C]`, the stream a cross layer attends to."""
        if self.norm_first and not torch.is_autocast_enabled(x.device.type):
            return self._pre_norm(x, other)
        if self.norm_first:
            if self.cross:
                x = x + self.gamma_1(self.cross_attn(self.norm1(x), self.norm2(other)))
                ff_norm = self.norm3
            else:
                normed = self.norm1(x)
                x = x + self.gamma_1(self.self_attn(normed, normed))
                ff_norm = self.norm2
            x = x + self.gamma_2(self._feed_forward(ff_norm(x)))
            if self.norm_out is not None:
                x = self.norm_out(x)
            return x
        x = self.norm1(x + self.gamma_1(self._attend(x, other)))
        return self.norm2(x + self.gamma_2(self._feed_forward(x)))


class PositionEmbedding(nn.Module):
    """Learnt positions (demucs' `t_emb="scaled"`): stored weight scaled down by `boost`."""

    def __init__(self, num_embeddings: int, dim: int, boost: float = 3.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim)
        self.boost = boost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * self.boost


class CrossTransformerEncoder(nn.Module):
    """Alternating per-stream self-attention and cross-stream attention layers.

    Layer `i` is a self-attention layer when `i % 2 == (1 if cross_first else 0)`.
    `layers` act on the spectral stream, `layers_t` on the temporal one.
    """

    def __init__(
        self,
        dim: int,
        emb: str = "sin",
        hidden_scale: float = 4.0,
        num_heads: int = 8,
        num_layers: int = 6,
        cross_first: bool = False,
        max_positions: int = 1000,
        norm_in: bool = True,
        norm_in_group: int = 0,
        group_norm: int = 0,
        norm_first: bool = False,
        norm_out: bool = False,
        max_period: float = 10000.0,
        layer_scale: bool = False,
        gelu: bool = True,
        weight_pos_embed: float = 1.0,
        cape_mean_normalize: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"transformer dim {dim} not divisible by {num_heads} heads")
        if emb not in ("sin", "cape", "scaled"):
            raise ValueError(f"unknown transformer embedding {emb!r}")
        self.dim = dim
        self.num_layers = num_layers
        self.classic_parity = 1 if cross_first else 0
        self.emb = emb
        self.max_period = max_period
        self.weight_pos_embed = weight_pos_embed
        self.cape_mean_normalize = cape_mean_normalize
        if emb == "scaled":
            self.position_embeddings = PositionEmbedding(max_positions, dim)
        if norm_in:
            self.norm_in: nn.Module = nn.LayerNorm(dim)
            self.norm_in_t: nn.Module = nn.LayerNorm(dim)
        elif norm_in_group:
            self.norm_in = TokenGroupNorm(int(norm_in_group), dim)
            self.norm_in_t = TokenGroupNorm(int(norm_in_group), dim)
        else:
            self.norm_in = nn.Identity()
            self.norm_in_t = nn.Identity()

        def layer(cross: bool) -> TransformerLayer:
            return TransformerLayer(
                dim, num_heads, int(dim * hidden_scale), cross, gelu=gelu,
                group_norm=group_norm, norm_first=norm_first, norm_out=norm_out,
                layer_scale=layer_scale,
            )  # fmt: skip

        self.layers = nn.ModuleList()
        self.layers_t = nn.ModuleList()
        for idx in range(num_layers):
            cross = idx % 2 != self.classic_parity
            self.layers.append(layer(cross))
            self.layers_t.append(layer(cross))

    def _time_positions(self, length: int, device: torch.device) -> torch.Tensor:
        """`[length, C]` positions of the temporal stream (no training-time randomness)."""
        if self.emb == "scaled":
            return self.position_embeddings(torch.arange(length, device=device))
        dim = self.dim
        if self.emb == "sin":
            return sin_embedding(length, dim, self.max_period).to(device)
        # CAPE at inference: plain sin positions, centred when mean_normalize.
        positions = torch.arange(length, dtype=torch.float32).view(-1, 1)
        if self.cape_mean_normalize:
            positions = positions - positions.mean()
        half = dim // 2
        exponents = torch.arange(half).view(1, -1) / (half - 1)
        phase = positions / (self.max_period**exponents)
        return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1).to(device)

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`x: [B, C, F, T1]` (spectral), `xt: [B, C, T2]` (temporal) -> same shapes.

        Under CPU bf16 autocast both streams run in bf16 from the input norms to the
        end, weights cast once (`ops.weight_like`), with the fused matmuls of the fp32 path:
        autocast alone would cast every activation to bf16 and back around each op.
        """
        if cpu_bf16_autocast(x):
            with torch.autocast("cpu", enabled=False):
                return self._forward(x.float(), xt.float(), torch.bfloat16)
        return self._forward(x, xt, None)

    def _forward(
        self, x: torch.Tensor, xt: torch.Tensor, dtype: torch.dtype | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, freqs, frames = x.shape
        pos_2d = sin_embedding_2d(channels, freqs, frames, self.max_period).to(x)
        pos_2d = pos_2d.permute(2, 1, 0).reshape(frames * freqs, channels)  # time-major
        x = x.permute(0, 3, 2, 1).reshape(batch, frames * freqs, channels)
        x = self.norm_in(x) + self.weight_pos_embed * pos_2d

        xt = xt.transpose(1, 2)
        pos_t = self._time_positions(xt.shape[1], xt.device).to(xt)
        xt = self.norm_in_t(xt) + self.weight_pos_embed * pos_t
        out_dtype = x.dtype
        if dtype is not None:
            x, xt = x.to(dtype), xt.to(dtype)

        for layer, layer_t in zip(self.layers, self.layers_t):
            if layer.cross:
                x, xt = layer(x, xt), layer_t(xt, x)
            else:
                x, xt = layer(x), layer_t(xt)

        x, xt = x.to(out_dtype), xt.to(out_dtype)
        x = x.view(batch, frames, freqs, channels).permute(0, 3, 2, 1)
        return x, xt.transpose(1, 2)
