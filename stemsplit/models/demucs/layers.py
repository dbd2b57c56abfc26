"""Residual building blocks shared by all Demucs generations.

`DConv` is the dilated residual branch inside each encoder/decoder layer (demucs
v3/v4, `demucs/demucs.py`), optionally with a chunked bidirectional LSTM and a local
attention (`LocalState`) in its deepest layers. Submodule order and names follow
demucs 4.1 so that checkpoints load unchanged (`layers.<d>.<index>.<param>`).
"""

from __future__ import annotations

import math
from typing import TypedDict, cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.demucs.config import DConvConfig
from stemsplit.models.ops import LSTM, fast_linear, fast_linear_add

__all__ = ["fast_linear", "fast_linear_add"]  # re-exported for the other Demucs modules


class LayerScale(nn.Module):
    """Per-channel residual scale (Touvron et al. 2021), `[B, C, T]` or channel-last."""

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_last:
            return self.scale * x
        return self.scale[:, None] * x


class BLSTM(nn.Module):
    """Bidirectional LSTM over time, `[B, C, T] -> [B, C, T]`.

    Longer inputs are cut into frames of `max_steps` with 50 % overlap, each run
    separately; each frame keeps only its middle half (its outer quarters at the
    signal's ends), as demucs does, so cost stays linear in T.
    """

    def __init__(
        self, dim: int, layers: int = 1, max_steps: int | None = None, skip: bool = False
    ) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.lstm = LSTM(bidirectional=True, num_layers=layers, hidden_size=dim, input_size=dim)
        self.linear = nn.Linear(2 * dim, dim)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, length = x.shape
        width = length if self.max_steps is None else self.max_steps
        framed = length > width
        y = x
        if framed:
            stride = width // 2
            num_frames = math.ceil(length / stride)
            padded = F.pad(x, (0, (num_frames - 1) * stride + width - length))
            frames = padded.unfold(-1, width, stride)  # [B, C, frames, width]
            y = frames.permute(0, 2, 1, 3).reshape(-1, channels, width)
        y = self.linear(self.lstm(y.permute(2, 0, 1))[0]).permute(1, 2, 0)
        if framed:
            frames = y.reshape(batch, -1, channels, width)
            limit = stride // 2
            parts = [frames[:, 0, :, :-limit]]
            parts += [frames[:, k, :, limit:-limit] for k in range(1, num_frames - 1)]
            parts.append(frames[:, -1, :, limit:])
            y = torch.cat(parts, -1)[..., :length]
        return x + y if self.skip else y


class LocalState(nn.Module):
    """Content-based attention over time with learnt exponential decays (no positions).

    `[B, C, T] -> [B, C, T]`; a position never attends to itself (its logit is -100).
    """

    def __init__(self, channels: int, heads: int = 4, nfreqs: int = 0, ndecay: int = 4) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} not divisible by heads {heads}")
        self.heads = heads
        self.nfreqs = nfreqs
        self.ndecay = ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        if nfreqs:
            self.query_freqs = nn.Conv1d(channels, heads * nfreqs, 1)
        if ndecay:
            self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
        self.proj = nn.Conv1d(channels + heads * nfreqs, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        heads = self.heads
        indexes = torch.arange(length, device=x.device, dtype=x.dtype)
        delta = indexes[:, None] - indexes[None, :]  # keys (t) x queries (s)

        queries = self.query(x).view(batch, heads, -1, length)
        keys = self.key(x).view(batch, heads, -1, length)
        dots = torch.einsum("bhct,bhcs->bhts", keys, queries) / keys.shape[2] ** 0.5
        if self.nfreqs:
            periods = torch.arange(1, self.nfreqs + 1, device=x.device, dtype=x.dtype)
            freq_kernel = torch.cos(2 * math.pi * delta / periods.view(-1, 1, 1))
            freq_q = self.query_freqs(x).view(batch, heads, -1, length) / self.nfreqs**0.5
            dots = dots + torch.einsum("fts,bhfs->bhts", freq_kernel, freq_q)
        if self.ndecay:
            decays = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
            decay_q = torch.sigmoid(self.query_decay(x).view(batch, heads, -1, length)) / 2
            decay_kernel = -decays.view(-1, 1, 1) * delta.abs() / self.ndecay**0.5
            dots = dots + torch.einsum("fts,bhfs->bhts", decay_kernel, decay_q)

        eye = torch.eye(length, device=x.device, dtype=torch.bool)
        weights = torch.softmax(dots.masked_fill(eye, -100), dim=2)
        content = self.content(x).view(batch, heads, -1, length)
        result = torch.einsum("bhts,bhct->bhcs", weights, content)
        if self.nfreqs:
            time_sig = torch.einsum("bhts,fts->bhfs", weights, freq_kernel)
            result = torch.cat([result, time_sig], 2)
        return x + self.proj(result.reshape(batch, -1, length))


class DConvOptions(TypedDict, total=False):
    """DConv's keyword arguments as the encoder/decoder layers pass them (`dconv_kw`)."""

    compress: float
    depth: int
    init: float
    norm: bool
    attn: bool
    heads: int
    ndecay: int
    lstm: bool
    gelu: bool
    kernel: int
    dilate: bool


def dconv_options(config: DConvConfig, index: int) -> DConvOptions:
    """The DConv keywords of layer `index` (demucs' `dconv_kw` built from `dconv_*`)."""
    return {
        "depth": config.depth,
        "compress": config.compress,
        "init": config.init,
        "attn": index >= config.attn,
        "lstm": index >= config.lstm,
    }


class DConv(nn.Module):
    """Residual branch of dilated convolutions, `[B, C, T] -> [B, C, T]`.

    Each of `depth` layers: conv k=3 (dilation 2**d) to C / compress channels, norm,
    GELU, [BLSTM], [LocalState], 1x1 conv to 2C, norm, GLU, LayerScale; added to x.
    """

    def __init__(
        self,
        channels: int,
        compress: float = 4,
        depth: int = 2,
        init: float = 1e-4,
        norm: bool = True,
        attn: bool = False,
        heads: int = 4,
        ndecay: int = 4,
        lstm: bool = False,
        gelu: bool = True,
        kernel: int = 3,
        dilate: bool = True,
    ) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"DConv kernel must be odd, got {kernel}")
        self.channels = channels
        self.compress = compress
        self.depth = abs(depth)
        dilate = depth > 0  # demucs: a negative depth means no dilation

        def norm_fn(dim: int) -> nn.Module:
            return nn.GroupNorm(1, dim) if norm else nn.Identity()

        hidden = int(channels / compress)
        activation = nn.GELU if gelu else nn.ReLU
        self.layers = nn.ModuleList()
        for d in range(self.depth):
            dilation = 2**d if dilate else 1
            padding = dilation * (kernel // 2)
            mods: list[nn.Module] = [
                nn.Conv1d(channels, hidden, kernel, dilation=dilation, padding=padding),
                norm_fn(hidden),
                activation(),
            ]
            # Same order as demucs (both inserted at index 3: LSTM ends up first).
            if lstm:
                mods.append(BLSTM(hidden, layers=2, max_steps=200, skip=True))
            if attn:
                mods.append(LocalState(hidden, heads=heads, ndecay=ndecay))
            mods += [
                nn.Conv1d(hidden, 2 * channels, 1),
                norm_fn(2 * channels),
                nn.GLU(1),
                LayerScale(channels, init),
            ]
            self.layers.append(nn.Sequential(*mods))

        # Plain layers (no LSTM, no attention) run on channel-last tokens: see forward_tokens.
        self.plain = not (lstm or attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, C, T] -> [B, C, T]`."""
        if self.plain:
            return self.forward_tokens(x.transpose(1, 2).contiguous()).transpose(1, 2)
        for layer in self.layers:
            x = x + layer(x)
        return x

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """`[N, T, C] -> [N, T, C]`: the same computation on channel-last rows.

        oneDNN runs these thin convolutions (C / compress channels, a few taps) far
        below its peak on `[N, C, T]`; as matmuls over contiguous tokens they cost
        about one pass over memory each, and the norms become row-wise layer norms.
        """
        if not self.plain:
            return self.forward(x.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()
        for index, layer in enumerate(self.layers):
            conv1, norm1, act, conv2, norm2, scale = _plain_layer_parts(cast(nn.Sequential, layer))
            hidden = act(_token_group_norm(token_conv(x, conv1), norm1))
            values, gates = _normalized_glu_halves(hidden, conv2, norm2, scale.scale)
            values.mul_(gates.sigmoid_())
            # In place once x is ours (fresh large tensors cost page faults).
            x = x + values if index == 0 else x.add_(values)
        return x


_Norm = nn.GroupNorm | nn.Identity


def _plain_layer_parts(
    layer: nn.Sequential,
) -> tuple[nn.Conv1d, _Norm, nn.Module, nn.Conv1d, _Norm, LayerScale]:
    """The typed modules of a plain DConv layer (conv, norm, act, conv, norm, GLU, scale)."""
    conv1, norm1, act, conv2, norm2, _glu, scale = layer
    return (
        cast(nn.Conv1d, conv1),
        cast(_Norm, norm1),
        act,
        cast(nn.Conv1d, conv2),
        cast(_Norm, norm2),
        cast(LayerScale, scale),
    )


def token_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """A stride-1 'same' Conv1d on tokens: `[N, T, Cin] -> [N, T, Cout]`.

    One matmul gives every tap's contribution (`[N, T, k, Cout]`); the taps are then
    added with their time shifts (zero past each row's ends, as the conv's padding).
    """
    rows, steps, chin = x.shape
    weight = conv.weight  # [Cout, Cin, k]
    chout, _, kernel = weight.shape
    if isinstance(conv.padding, str):  # "same"/"valid": not a layout demucs uses
        raise ValueError("token_conv needs a stride-1, ungrouped, length-preserving conv")
    dilation, padding = conv.dilation[0], conv.padding[0]
    if conv.stride[0] != 1 or conv.groups != 1 or 2 * padding != dilation * (kernel - 1):
        raise ValueError("token_conv needs a stride-1, ungrouped, length-preserving conv")
    flat = x.reshape(-1, chin)
    bias = conv.bias if conv.bias is not None else weight.new_zeros(chout)
    if kernel == 1:
        return fast_linear(flat, weight[:, :, 0], bias).view(rows, steps, chout)
    taps = fast_linear(flat, weight.permute(2, 0, 1).reshape(kernel * chout, chin)).view(
        rows, steps, kernel, chout
    )
    out = taps[:, :, kernel // 2] + bias
    for tap in range(kernel):
        shift = tap * dilation - padding  # output t reads input t + shift
        if shift == 0 or abs(shift) >= steps:
            continue
        if shift > 0:
            out[:, : steps - shift] += taps[:, shift:, tap]
        else:
            out[:, -shift:] += taps[:, : steps + shift, tap]
    return out


def _token_group_norm(x: torch.Tensor, norm: _Norm) -> torch.Tensor:
    """GroupNorm(1, C) of `[N, C, T]` applied to tokens `[N, T, C]` (or Identity)."""
    if isinstance(norm, nn.Identity):
        return x
    if norm.num_groups != 1:
        raise ValueError("token group norm supports one group")
    rows, steps, channels = x.shape
    y = F.layer_norm(x.reshape(rows, steps * channels), (steps * channels,), eps=norm.eps)
    return torch.addcmul(norm.bias, y.view(rows, steps, channels), norm.weight)


def _normalized_glu_halves(
    h: torch.Tensor, conv: nn.Conv1d, norm: _Norm, out_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """`out_scale * GLU(norm(conv(h)))`'s two halves, without materialising `conv(h)`.

    `h: [N, T, H]` tokens with few channels, `conv`: 1x1 to 2C, `norm`: GroupNorm(1)
    or Identity. The norm's per-row mean and std follow from `h`'s row sums and Gram
    matrices (float64), so the wide output is written once per half: each is one matmul
    of `h` scaled by 1/std, plus three columns carrying the bias terms.
    """
    rows, steps, hidden = h.shape
    weight = conv.weight[:, :, 0]  # [2C, H]
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    wide = weight.shape[0]
    if isinstance(norm, nn.Identity):
        inv_std = h.new_ones(rows)
        mean_over_std = h.new_zeros(rows)
        gamma, beta = torch.ones_like(bias), torch.zeros_like(bias)
    else:
        if norm.num_groups != 1:
            raise ValueError("fused DConv norm supports one group")
        h64, w64, b64 = h.double(), weight.double(), bias.double()
        sums = h64.sum(dim=1)  # [N, H]
        gram = torch.bmm(h64.transpose(1, 2), h64)  # [N, H, H]
        count = steps * wide
        total = sums @ w64.sum(dim=0) + steps * b64.sum()
        total_sq = (
            (gram * (w64.t() @ w64)).sum(dim=(1, 2))
            + 2 * sums @ (w64.t() @ b64)
            + steps * b64.dot(b64)
        )
        mean = total / count
        var = (total_sq / count - mean**2).clamp_min(0)
        inv_std64 = 1 / torch.sqrt(var + norm.eps)
        inv_std = inv_std64.to(h.dtype)
        mean_over_std = (mean * inv_std64).to(h.dtype)
        gamma, beta = norm.weight, norm.bias
    # n = (h W^T + b - mean) / std * gamma + beta, as one matmul over augmented tokens.
    columns = [h * inv_std[:, None, None]]
    columns += [c[:, None, None].expand(rows, steps, 1) for c in (inv_std, mean_over_std)]
    columns.append(h.new_ones(rows, steps, 1))
    augmented = torch.cat(columns, dim=-1).view(rows * steps, hidden + 3)
    full = torch.cat(
        [(weight * gamma[:, None]).t(), (bias * gamma)[None], -gamma[None], beta[None]], dim=0
    )  # [H + 3, 2C]
    half = wide // 2
    scaled = full[:, :half] * out_scale
    values = fast_linear(augmented, scaled.t().contiguous()).view(rows, steps, half)
    gates = fast_linear(augmented, full[:, half:].t().contiguous()).view(rows, steps, half)
    return values, gates
