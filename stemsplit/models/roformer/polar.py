"""PoPE, polar positional embedding (Gopalakrishnan et al. 2025, "Decoupling the
'What' and 'Where' With Polar Coordinate Positional Embeddings"), as MSST's
`use_pope: true` RoFormers ("PolarFormer", MSST commit 5a209b0) take it from
lucidrains' PoPE_pytorch.

Each query/key feature j becomes a complex number of magnitude softplus(x_j) and
phase `position * inv_freqs[j]`; keys add a learned per-head phase bias clamped to
[-2 pi, 0]. The attention score is then sum_j |q_j| |k_j| cos(phase_q - phase_k - bias),
written as a real dot product of [|x| cos, |x| sin] halves, scaled by 1/sqrt(dim_head)
(not by the doubled width). Unlike rotary embedding, every feature carries a position
(`dim_head` frequencies, not `dim_head / 2`).

State dict (one instance shared by all time, or all band, attentions, under each
attention's `pope_embed.`): `inv_freqs` [dim_head] (a buffer MSST saves; read back,
never recomputed, so a half-precision checkpoint's rounded values are the ones used)
and `bias` [heads, dim_head].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PolarEmbedding(nn.Module):
    """PoPE for `heads` heads of `dim` features; `polar(query, key)` embeds both."""

    inv_freqs: torch.Tensor  # buffer (register_buffer below)

    def __init__(self, dim: int, heads: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.register_buffer("inv_freqs", theta ** -(torch.arange(dim).float() / dim))
        self.bias = nn.Parameter(torch.zeros(heads, dim))

    def polar(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query, key [b, h, n, d] -> [b, h, n, 2d] each, in the embedding's dtype (fp32),
        such that softmax attention at its default scale 1/sqrt(2d) over them equals
        PoPE attention at MSST's scale 1/sqrt(d) (the queries carry the sqrt(2))."""
        seq_len = query.shape[-2]
        positions = torch.arange(seq_len, device=self.inv_freqs.device, dtype=self.inv_freqs.dtype)
        angles = torch.outer(positions, self.inv_freqs)  # [n, d]
        key_angles = angles + self.bias.clamp(-2 * math.pi, 0.0).unsqueeze(1)  # [h, n, d]
        query = F.softplus(query.to(angles.dtype)) * math.sqrt(2.0)
        key = F.softplus(key.to(angles.dtype))
        query = torch.cat([query * angles.cos(), query * angles.sin()], dim=-1)
        key = torch.cat([key * key_angles.cos(), key * key_angles.sin()], dim=-1)
        return query, key
