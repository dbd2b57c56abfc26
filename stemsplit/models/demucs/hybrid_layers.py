"""Encoder and decoder layers of the hybrid Demucs models (demucs 4.1 `hdemucs.py`).

One layer class serves both branches: with `freq=True` it convolves along the
frequency axis of `[B, C, F, T]` (kernel `[k, 1]`), otherwise along time of
`[B, C, T]`. `MultiWrap` splits the frequency axis into bands, one layer copy each.
Attribute names match demucs so that state_dict keys do.
"""

from __future__ import annotations

import copy
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.demucs.layers import DConv, DConvOptions, fast_linear

_Conv = nn.Conv1d | nn.Conv2d


def _norm(enabled: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if enabled else nn.Identity()


def _dconv_over_freqs(dconv: DConv, y: torch.Tensor) -> torch.Tensor:
    """Run a time-axis DConv on every frequency row of `[B, C, F, T]`.

    The rows go through as channel-last tokens `[B * F, T, C]`: a free view of a
    channels-last `y`, and the result is channels-last again.
    """
    batch, channels, freqs, frames = y.shape
    tokens = dconv.forward_tokens(y.permute(0, 2, 3, 1).reshape(-1, frames, channels))
    return tokens.view(batch, freqs, frames, channels).permute(0, 3, 1, 2)


def _gelu_(y: torch.Tensor) -> torch.Tensor:
    """GELU in place (on a tensor this layer just made; saves a large allocation)."""
    return torch.ops.aten.gelu_(y)


def _token_layer_tail(y: torch.Tensor, dconv: DConv | None, rewrite: _Conv) -> torch.Tensor:
    """[DConv], 1x1 rewrite to 2C and GLU of `[B, C, F, T]` as matmuls over tokens.

    The GLU's two halves come from two matmuls, so the 2C-wide rewrite output is
    never written; the result is channels-last `[B, C, F, T]`.
    """
    batch, channels, freqs, frames = y.shape
    # A free view of a channels-last `y`; the time branch's `[B, C, 1, T]` is transposed
    # once here, or every matmul below would read it strided (3-4x slower).
    tokens = y.permute(0, 2, 3, 1).reshape(-1, frames, channels).contiguous()
    if dconv is not None:
        tokens = dconv.forward_tokens(tokens)
    flat = tokens.reshape(-1, channels)
    weight = rewrite.weight.flatten(1)  # [2C', C] (1x1 Conv1d or Conv2d)
    half = weight.shape[0] // 2
    bias = rewrite.bias if rewrite.bias is not None else weight.new_zeros(2 * half)
    values = fast_linear(flat, weight[:half], bias[:half])
    gates = fast_linear(flat, weight[half:], bias[half:])
    values.mul_(gates.sigmoid_())
    return values.view(batch, freqs, frames, half).permute(0, 3, 1, 2)


class ScaledEmbedding(nn.Module):
    """Frequency embedding whose stored weight is divided by `scale` (a learning-rate boost)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 10.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * self.scale


class HEncLayer(nn.Module):
    """Strided conv, [inject], norm + GELU, [DConv], 1x1 rewrite + GLU.

    `empty` keeps only the first conv (the time layer that merges into the freq branch).
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int = 8,
        stride: int = 4,
        norm_groups: int = 1,
        empty: bool = False,
        freq: bool = True,
        dconv: bool = True,
        norm: bool = True,
        context: int = 0,
        dconv_kw: DConvOptions | None = None,
        pad: bool = True,
        rewrite: bool = True,
    ) -> None:
        super().__init__()
        padding = kernel_size // 4 if pad else 0
        self.freq = freq
        self.kernel_size = kernel_size
        self.stride = stride
        self.empty = empty
        self.norm = norm
        self.pad = padding
        self.conv: _Conv
        if freq:
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (padding, 0))
        else:
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, padding)
        if empty:
            return
        conv_class = nn.Conv2d if freq else nn.Conv1d
        self.norm1 = _norm(norm, norm_groups, chout)
        self.rewrite: _Conv | None = None
        if rewrite:
            self.rewrite = conv_class(chout, 2 * chout, 1 + 2 * context, 1, context)
            self.norm2: nn.Module = _norm(norm, norm_groups, 2 * chout)
        self.dconv: DConv | None = DConv(chout, **(dconv_kw or {})) if dconv else None

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> torch.Tensor:
        """Freq: `[B, C, F, T] -> [B, C', F/stride, T]`; time: `[B, C, T] -> [B, C', T/stride]`."""
        if not self.freq:
            if x.dim() == 4:
                x = x.reshape(x.shape[0], -1, x.shape[-1])
            remainder = x.shape[-1] % self.stride
            if remainder:
                x = F.pad(x, (0, self.stride - remainder))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            if inject.dim() == 3 and y.dim() == 4:
                inject = inject[:, :, None]
            y = y.add_(inject)  # y is the conv's fresh output
        y = _gelu_(self.norm1(y))
        token_rewrite = self._token_rewrite()
        if token_rewrite is not None:
            if self.freq:
                return _token_layer_tail(y, self.dconv, token_rewrite)
            return _token_layer_tail(y[:, :, None], self.dconv, token_rewrite)[:, :, 0]
        if self.dconv is not None:
            y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        if self.rewrite is not None:
            return F.glu(self.norm2(self.rewrite(y)), dim=1)
        return y

    def _token_rewrite(self) -> _Conv | None:
        """The 1x1 rewrite conv when DConv and the rewrite + GLU can all run on tokens."""
        rewrite = self.rewrite
        if (
            rewrite is not None
            and isinstance(self.norm2, nn.Identity)
            and set(rewrite.kernel_size) == {1}
            and set(rewrite.stride) == {1}
            and rewrite.groups == 1
        ):
            return rewrite
        return None


class HDecLayer(nn.Module):
    """Skip add, 1x1 rewrite + GLU, [DConv], transposed conv, norm, GELU unless last.

    `forward` returns the output and the input of the transposed conv (`pre`), which
    feeds the time decoder where the branches split again.
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        last: bool = False,
        kernel_size: int = 8,
        stride: int = 4,
        norm_groups: int = 1,
        empty: bool = False,
        freq: bool = True,
        dconv: bool = True,
        norm: bool = True,
        context: int = 1,
        dconv_kw: DConvOptions | None = None,
        pad: bool = True,
        context_freq: bool = True,
        rewrite: bool = True,
    ) -> None:
        super().__init__()
        self.pad = kernel_size // 4 if pad else 0
        self.last = last
        self.freq = freq
        self.chin = chin
        self.empty = empty
        self.stride = stride
        self.kernel_size = kernel_size
        self.norm = norm
        self.context_freq = context_freq
        self.conv_tr: nn.ConvTranspose1d | nn.ConvTranspose2d
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
        self.norm2 = _norm(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite: _Conv | None = None
        if rewrite:
            if not freq:
                self.rewrite = nn.Conv1d(chin, 2 * chin, 1 + 2 * context, 1, context)
            elif context_freq:
                self.rewrite = nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
            else:  # context along time only (MultiWrap bands)
                self.rewrite = nn.Conv2d(chin, 2 * chin, (1, 1 + 2 * context), 1, (0, context))
            self.norm1 = _norm(norm, norm_groups, 2 * chin)
        self.dconv: DConv | None = DConv(chin, **(dconv_kw or {})) if dconv else None

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freq and x.dim() == 3:
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
            x = x.contiguous(memory_format=torch.channels_last)
        if self.empty:
            y = x
        else:
            if skip is None:
                raise ValueError("a decoder layer that is not empty needs its U-Net skip")
            x = x + skip
            y = F.glu(self.norm1(self.rewrite(x)), dim=1) if self.rewrite is not None else x
            if self.dconv is not None:
                y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        z = self.norm2(self.conv_tr(y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad : -self.pad, :]
        else:
            z = z[..., self.pad : self.pad + length]
        if not self.last:
            z = F.gelu(z)  # not in place: z may be a view of the conv's output
        return z, y


_Layer = TypeVar("_Layer", HEncLayer, HDecLayer)


class MultiWrap(nn.Module):
    """Applies one copy of a freq layer per frequency band (`split_ratios` of F).

    Band edges are chosen so that copies with equal weights equal the unsplit layer.
    Only for unnormalised, padded freq layers (as demucs asserts).
    """

    def __init__(self, layer: HEncLayer | HDecLayer, split_ratios: list[float]) -> None:
        super().__init__()
        if layer.norm or not layer.freq or not layer.pad:
            raise ValueError("MultiWrap needs an unnormalised, padded frequency layer")
        self.split_ratios = list(split_ratios)
        self.conv = isinstance(layer, HEncLayer)
        self.layers = nn.ModuleList()
        for _ in range(len(split_ratios) + 1):
            band = copy.deepcopy(layer)
            if isinstance(band, HEncLayer):
                band.conv.padding = (0, 0)
            else:
                band.pad = 0
            self.layers.append(band)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, length: int | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, None]:
        if self.conv:
            return self._encode(x)
        if skip is None:
            raise ValueError("a banded decoder layer needs its U-Net skip")
        return self._decode(x, skip), None

    def _bands(self, kind: type[_Layer]) -> list[_Layer]:
        """The band copies, typed (a ModuleList's stubs cannot know its contents)."""
        return [layer for layer in self.layers if isinstance(layer, kind)]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        start = 0
        outs = []
        for ratio, layer in zip([*self.split_ratios, 1], self._bands(HEncLayer)):
            pad = layer.kernel_size // 4
            if ratio == 1:
                limit = freqs
            else:
                limit = round(freqs * ratio)
                span = limit - start + (pad if start == 0 else 0)
                frames = round((span - layer.kernel_size) / layer.stride + 1)
                limit = start + (frames - 1) * layer.stride + layer.kernel_size
                if start == 0:
                    limit -= pad
            y = x[:, :, start:limit, :]
            if start == 0:
                y = F.pad(y, (0, 0, pad, 0))
            if ratio == 1:
                y = F.pad(y, (0, 0, 0, pad))
            outs.append(layer(y))
            start = limit - layer.kernel_size + layer.stride
        return torch.cat(outs, dim=2)

    def _decode(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        start = 0
        outs: list[torch.Tensor] = []
        layers = self._bands(HDecLayer)
        last = layers[0].last
        for ratio, layer in zip([*self.split_ratios, 1], layers):
            limit = freqs if ratio == 1 else round(freqs * ratio)
            # Each band runs as a last layer (no GELU); the activation follows the merge.
            layer.last = True
            out, _ = layer(x[:, :, start:limit], skip[:, :, start:limit], 0)
            layer.last = last
            stride = layer.stride
            if outs:  # overlap-add the band's first stride into the previous band
                overlap = out[:, :, :stride]
                if layer.conv_tr.bias is not None:
                    overlap = overlap - layer.conv_tr.bias.view(1, -1, 1, 1)
                outs[-1][:, :, -stride:] += overlap
                out = out[:, :, stride:]
            if ratio == 1:
                out = out[:, :, : -stride // 2, :]
            if start == 0:
                out = out[:, :, stride // 2 :, :]
            outs.append(out)
            start = limit
        out = torch.cat(outs, dim=2)
        return out if last else F.gelu(out)
