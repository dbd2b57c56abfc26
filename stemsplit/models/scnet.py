"""SCNet (Sparse Compression Network) as Music-Source-Separation-Training builds it.

Model types `scnet` and `scnet_masked` (same yaml keys; the masked one has a
frequency position embedding and a mask head, recognised from its state dict).
For a chunk `mix[B, C, L]`:

1. Zero-pad the end so the STFT has an even frame count (the separation network's
   rfft over time needs it), STFT (`nfft`, `hop_size`, `win_size`, centred,
   `normalized`; MSST's `scnet` uses no window, i.e. rectangular, `scnet_masked` a
   hann window), real/imaginary parts as channels: `[B, 2C, F, T]`.
2. Encoder: per level a sparse down-sample block: the frequency axis is cut in three
   bands (`band_SR` fractions), each band strided-convolved along frequency
   (`band_kernel`, `band_stride`) then through `conv_depths` convolution modules
   along time, the bands concatenated (the skip) and a 3x3 `globalconv`.
3. Separation: `num_dplayer` dual-path LSTM layers (over frequency, then time),
   alternately in the time domain and, after an orthonormal rfft over time, in the
   frequency domain (twice the channels).
4. Decoder: per level (deepest first) a fusion layer (add the skip, 3x3 conv, GLU)
   and a sparse up-sample layer (per band transposed conv, trimmed to the band's
   original size); the last gives `dims[0] * stems` channels, read back as complex
   spectrograms (masked: a mask applied to the mixture's), inverse STFT, crop.

State (level i from dims[i] to dims[i+1] = d, three bands b):
- `encoder.{i}.SDlayer.convs.{b}` Conv2d [d, dims[i], band_kernel[b], 1]
- `encoder.{i}.conv_modules.{b}.layers.{j}.{0: GroupNorm d, 1: Conv1d [2h, d, k],
  3: depthwise Conv1d [h, 1, k], 4: GroupNorm h, 6: Conv1d [d, h, 1]}` (h = d / compress)
- `encoder.{i}.globalconv` Conv2d [d, d, 3, 3]
- `separation_net.dp_modules.{n}.{lstm_layers,linear_layers,norm_layers}.{0,1}`:
  bidirectional LSTM (width w = dims[-1] * (2 if n odd else 1), hidden w * expand),
  Linear [w, 2 * hidden], GroupNorm w
- `decoder.{L-1-i}.0.conv` Conv2d [2d, 2d, 3, 3];
  `decoder.{L-1-i}.1.convtrs.{b}` ConvTranspose2d [d, dims[i] (x stems at i = 0), kernel, 1]
- masked only: `pos_embed_f` [1, dims[0], nfft // 2 + 1, 1];
  `mask_layer.{0: Conv2d [64, 4 * stems, 3, 3], 2: Conv2d [4 * stems, 64, 1, 1]}`
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo
from stemsplit.models.ops import LSTM, fast_linear_add

FAMILY = "SCNet"
MODEL_TYPES = ("scnet", "scnet_masked")


@dataclass(frozen=True)
class SCNetConfig:
    """SCNet's constructor arguments (MSST's `model` section; MSST's defaults)."""

    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    audio_channels: int = 2
    dims: tuple[int, ...] = (4, 32, 64, 128)
    nfft: int = 4096
    hop_size: int = 1024
    win_size: int = 4096
    normalized: bool = True
    band_SR: tuple[float, float, float] = (0.175, 0.392, 0.433)  # MSST's key name
    band_stride: tuple[int, int, int] = (1, 4, 16)
    band_kernel: tuple[int, int, int] = (3, 4, 16)
    conv_depths: tuple[int, int, int] = (3, 2, 1)
    compress: int = 4
    conv_kernel: int = 3
    num_dplayer: int = 6
    expand: int = 1
    masked: bool = False


class _Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.sigmoid()


class _ConvolutionModule(nn.Module):
    """Residual 1-D conv layers along time: [N, channels, T] -> same shape."""

    def __init__(self, channels: int, depth: int, compress: int, kernel: int) -> None:
        super().__init__()
        hidden, pad = int(channels / compress), kernel // 2
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(1, channels),
                nn.Conv1d(channels, hidden * 2, kernel, padding=pad),
                nn.GLU(1),
                nn.Conv1d(hidden, hidden, kernel, padding=pad, groups=hidden),
                nn.GroupNorm(1, hidden),
                _Swish(),
                nn.Conv1d(hidden, channels, 1),
            )
            for _ in range(abs(depth))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = x + layer(x)
        return x


def _band_edges(bins: int, config: SCNetConfig) -> list[tuple[int, int]]:
    """Frequency ranges of the low, mid and high bands (as MSST rounds them)."""
    low, mid = config.band_SR[0], config.band_SR[1]
    first, second = math.ceil(bins * low), math.ceil(bins * (low + mid))
    return [(0, first), (first, second), (second, bins)]


class _SDLayer(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.config = config
        self.convs = nn.ModuleList(
            nn.Conv2d(channels_in, channels_out, (kernel, 1), (stride, 1))
            for kernel, stride in zip(config.band_kernel, config.band_stride)
        )

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
        """x: [B, C, F, T] -> three down-sampled bands and their original sizes."""
        bands, sizes = [], []
        edges = _band_edges(x.shape[2], self.config)
        for conv, kernel, stride, (start, end) in zip(
            self.convs, self.config.band_kernel, self.config.band_stride, edges
        ):
            size = end - start
            total = kernel - stride if stride == 1 else (stride - size % stride) % stride
            band = F.pad(x[:, :, start:end], (0, 0, total // 2, total - total // 2))
            bands.append(conv(band))
            sizes.append(size)
        return bands, sizes


class _SDBlock(nn.Module):
    """Sparse down-sample block: [B, Cin, F, T] -> ([B, Cout, F', T], skip, sizes)."""

    def __init__(self, channels_in: int, channels_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.SDlayer = _SDLayer(channels_in, channels_out, config)  # MSST's key name
        self.conv_modules = nn.ModuleList(
            _ConvolutionModule(channels_out, depth, config.compress, config.conv_kernel)
            for depth in config.conv_depths
        )
        self.globalconv = nn.Conv2d(channels_out, channels_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        bands, original_sizes = self.SDlayer(x)
        outputs = []
        for conv, band in zip(self.conv_modules, bands):
            batch, channels, bins, frames = band.shape
            rows = band.permute(0, 2, 1, 3).reshape(-1, channels, frames)
            rows = conv(rows).view(batch, bins, channels, frames).permute(0, 2, 1, 3)
            outputs.append(F.gelu(rows))
        sizes = [band.shape[-2] for band in outputs]
        full_band = torch.cat(outputs, dim=2)
        return self.globalconv(full_band), full_band, sizes, original_sizes


class _FusionLayer(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels * 2, channels * 2, 3, 1, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # MSST convolves (x + skip) repeated twice along channels: the same as convolving
        # it once with the two halves of the kernel's input channels summed (half the work).
        weight = self.conv.weight
        half = weight.shape[1] // 2
        folded = weight[:, :half] + weight[:, half:]
        return F.glu(F.conv2d(x + skip, folded, self.conv.bias, padding=1), dim=1)


class _SULayer(nn.Module):
    """Sparse up-sample layer: per band transposed conv, trimmed to the band's size."""

    def __init__(self, channels_in: int, channels_out: int, config: SCNetConfig) -> None:
        super().__init__()
        self.convtrs = nn.ModuleList(
            nn.ConvTranspose2d(channels_in, channels_out, (kernel, 1), (stride, 1))
            for kernel, stride in zip(config.band_kernel, config.band_stride)
        )

    def forward(self, x: torch.Tensor, sizes: list[int], original_sizes: list[int]) -> torch.Tensor:
        starts = [0, sizes[0], sizes[0] + sizes[1]]
        ends: list[int | None] = [sizes[0], sizes[0] + sizes[1], None]
        outputs = []
        for convtr, start, end, size in zip(self.convtrs, starts, ends, original_sizes):
            out = convtr(x[:, :, start:end])
            trim = abs(size - out.shape[2]) // 2
            outputs.append(out[:, :, trim : trim + size])
        return torch.cat(outputs, dim=2)


class _DualPathRNN(nn.Module):
    """LSTM over frequency then over time, each residual, on one batch item in the
    separation net's channels-last layouts: [F, T, C] in, [T, F, C] out.

    The sequence axis leads, so both LSTMs run time-major on contiguous tensors (no
    transposes in or out of torch's oneDNN LSTM); the output Linear and the residual add
    are one oneDNN matmul (`fast_linear_add`). Same maths as MSST's [B, C, F, T] module.
    """

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.lstm_layers = nn.ModuleList(
            LSTM(channels, hidden, num_layers=1, bidirectional=True) for _ in range(2)
        )
        self.linear_layers = nn.ModuleList(nn.Linear(hidden * 2, channels) for _ in range(2))
        self.norm_layers = nn.ModuleList(nn.GroupNorm(1, channels) for _ in range(2))

    def _half(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """x: [L, N, C] -> x + Linear(BiLSTM over L(GroupNorm(x))), same shape."""
        norm = cast(nn.GroupNorm, self.norm_layers[index])
        # [1, C, L, N] in channels-last memory: torch's GroupNorm reads it in place
        y = F.group_norm(x.unsqueeze(0).permute(0, 3, 1, 2), 1, norm.weight, norm.bias, norm.eps)
        y = self.lstm_layers[index](y.permute(0, 2, 3, 1)[0])[0]
        linear = cast(nn.Linear, self.linear_layers[index])
        return fast_linear_add(y, linear.weight, linear.bias, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._half(0, x).transpose(0, 1).contiguous()
        return self._half(1, x)


class _DualPathStack(nn.Module):
    """`dp_modules` on [B, C, F, T], alternately in the time domain and, after an
    orthonormal rfft over time (real and imaginary parts as channels), in the frequency
    domain of the time axis. MSST's SeparationNet with any dual-path layer."""

    dp_modules: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.dp_modules):
            x = layer(x)
            if index % 2 == 0:  # to the frequency domain of the time axis
                spectrum = torch.fft.rfft(x.float(), dim=3, norm="ortho")
                x = torch.cat([spectrum.real, spectrum.imag], dim=1)
            else:  # and back
                half = x.shape[1] // 2
                x = x.float()
                x = torch.fft.irfft(torch.complex(x[:, :half], x[:, half:]), dim=3, norm="ortho")
        return x


class _SeparationNet(_DualPathStack):
    """The dual-path LSTM stack, a batch item at a time in channels-last layouts
    (`_DualPathRNN`): the item [C, F, T] is laid out [F, T, C] once, each layer returns
    [T, F, C], the rfft / irfft run over that leading time axis and the next layer's
    [F, T', C] is written in the same pass; [C, F, T] again at the end."""

    def __init__(self, channels: int, expand: int, num_layers: int) -> None:
        super().__init__()
        self.dp_modules = nn.ModuleList(
            _DualPathRNN(channels * (2 if index % 2 else 1), expand) for index in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.dp_modules):
            return x
        return torch.stack([self._item(item) for item in x])

    def _item(self, x: torch.Tensor) -> torch.Tensor:
        """One batch item: [C, F, T] -> same."""
        x = x.permute(1, 2, 0).contiguous()  # [F, T, C]
        for index, layer in enumerate(self.dp_modules):
            x = layer(x)  # [T, F, C]
            frames, bins, channels = x.shape
            if index % 2 == 0:  # to the frequency domain of the time axis: [F, T', 2C]
                spectrum = torch.view_as_real(torch.fft.rfft(x.float(), dim=0, norm="ortho"))
                x = spectrum.permute(1, 0, 3, 2).reshape(bins, -1, 2 * channels)
                continue
            half = channels // 2  # and back
            x = x.float().view(frames, bins, 2, half).transpose(2, 3).contiguous()
            x = torch.fft.irfft(torch.view_as_complex(x), dim=0, norm="ortho")  # [T, F, C/2]
            last = index == len(self.dp_modules) - 1
            x = (x.permute(2, 1, 0) if last else x.transpose(0, 1)).contiguous()
        return x


class SCNet(nn.Module):
    """SCNet / masked SCNet with the model protocol's metadata (module docstring)."""

    window: torch.Tensor  # buffer (register_buffer in __init__)

    def __init__(
        self,
        config: SCNetConfig,
        info: ModelInfo,
        separation_net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        info.attach(self)
        self.audio_channels = config.audio_channels
        dims, stems = config.dims, len(config.sources)
        window = torch.hann_window(config.nfft) if config.masked else torch.ones(config.win_size)
        self.register_buffer("window", window, persistent=False)

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for index in range(len(dims) - 1):
            self.encoder.append(_SDBlock(dims[index], dims[index + 1], config))
            out = dims[index] * (stems if index == 0 else 1)
            self.decoder.insert(
                0,
                nn.Sequential(
                    _FusionLayer(dims[index + 1]), _SULayer(dims[index + 1], out, config)
                ),
            )
        if separation_net is None:
            separation_net = _SeparationNet(dims[-1], config.expand, config.num_dplayer)
        self.separation_net = separation_net
        if config.masked:
            self.pos_embed_f = nn.Parameter(torch.zeros(1, dims[0], config.nfft // 2 + 1, 1))
            self.mask_layer = nn.Sequential(
                nn.Conv2d(4 * stems, 64, kernel_size=3, padding="same"),
                nn.GELU(),
                nn.Conv2d(64, 4 * stems, kernel_size=1, padding="same"),
                nn.Tanh(),
            )

    def valid_length(self, length: int) -> int:
        """Any length works: forward pads to an even frame count and crops back."""
        return length

    def _stft_options(self) -> dict[str, Any]:
        config = self.config
        return {
            "n_fft": config.nfft, "hop_length": config.hop_size, "win_length": config.win_size,
            "window": self.window, "center": True, "normalized": config.normalized,
        }  # fmt: skip

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: [B, C, L] -> stems [B, S, C, L].

        Batch items run one at a time: a whole batch's activations (an 11 s chunk's first
        encoder level alone is 37 MB an item) outgrow the caches, and at MSST's batch 8
        the items one by one took 0.73x the time of the batch at once (same numbers).
        """
        config = self.config
        batch, channels, _ = mix.shape
        if channels != config.audio_channels:
            raise ValueError(f"expected {config.audio_channels} audio channels, got {channels}")
        if batch > 1:
            return torch.cat([self._forward(item) for item in mix.split(1)])
        return self._forward(mix)

    def _forward(self, mix: torch.Tensor) -> torch.Tensor:
        config = self.config
        batch, channels, length = mix.shape
        hop = config.hop_size
        padding = hop - length % hop
        if (length + padding) // hop % 2 == 0:
            padding += hop
        x = F.pad(mix, (0, padding)).reshape(batch * channels, length + padding)
        spec = torch.view_as_real(torch.stft(x, **self._stft_options(), return_complex=True))
        _, bins, frames, _ = spec.shape
        x = spec.permute(0, 3, 1, 2).reshape(batch, 2 * channels, bins, frames)
        if config.masked:
            mixture = x.repeat(1, len(config.sources), 1, 1)
            x = x + self._position(bins)

        skips = []
        for block in self.encoder:
            x, skip, sizes, original_sizes = block(x)
            skips.append((skip, sizes, original_sizes))
        x = self.separation_net(x)
        for stage in cast("Iterable[nn.Sequential]", self.decoder):
            fusion, upsample = cast(_FusionLayer, stage[0]), cast(_SULayer, stage[1])
            skip, sizes, original_sizes = skips.pop()
            x = upsample(fusion(x, skip), sizes, original_sizes)

        if config.masked:
            x = _complex(mixture, bins, frames) * _complex(self.mask_layer(x), bins, frames)
        else:
            x = _complex(x, bins, frames)
        audio = torch.istft(x, **self._stft_options())
        audio = audio.reshape(batch, len(config.sources), channels, -1)
        return audio[..., :-padding]

    def _position(self, bins: int) -> torch.Tensor:
        embedding: torch.Tensor = self.pos_embed_f
        if bins > embedding.shape[2]:  # MSST repeats the table past its size
            embedding = embedding.repeat(1, 1, math.ceil(bins / embedding.shape[2]), 1)
        return embedding[:, :, :bins]


def _complex(x: torch.Tensor, bins: int, frames: int) -> torch.Tensor:
    """[B, 2 * n, F, T] channels -> n complex spectrograms, paired as MSST reshapes them."""
    x = x.reshape(-1, 2, bins, frames).permute(0, 2, 3, 1)
    return torch.view_as_complex(x.contiguous())


_LISTS = {"dims", "band_SR", "band_stride", "band_kernel", "conv_depths", "sources"}


def scnet_config(model: Mapping[str, Any], masked: bool) -> SCNetConfig:
    """Read MSST's `model` section (keyword arguments of SCNet; unknown ones rejected,
    as MSST's constructor rejects them)."""
    defaults = SCNetConfig()
    unknown = sorted(set(model) - (set(SCNetConfig.__dataclass_fields__) - {"masked"}))
    if unknown:
        raise ModelError(f"{FAMILY} config: unknown model keys {unknown}")
    values: dict[str, Any] = {}
    for key, default in vars(defaults).items():
        if key == "masked":
            continue
        value = model.get(key, default)
        if key in _LISTS:
            if not isinstance(value, (list, tuple)) or not value:
                raise ModelError(f"{FAMILY} config: model.{key} must be a list")
            value = tuple(value)
        values[key] = value
    parsed = SCNetConfig(**values, masked=masked)
    if not all(isinstance(s, str) for s in parsed.sources):
        raise ModelError(f"{FAMILY} config: model.sources must be stem names")
    for key in ("band_SR", "band_stride", "band_kernel", "conv_depths"):
        if len(getattr(parsed, key)) != 3:
            raise ModelError(f"{FAMILY} config: model.{key} needs three values (low, mid, high)")
    integers = [*parsed.dims, *parsed.band_stride, *parsed.band_kernel, parsed.audio_channels,
                parsed.nfft, parsed.hop_size, parsed.win_size, parsed.compress,
                parsed.conv_kernel, parsed.expand]  # fmt: skip
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in integers):
        raise ModelError(f"{FAMILY} config: sizes, strides and kernels must be positive integers")
    if parsed.conv_kernel % 2 == 0:
        raise ModelError(f"{FAMILY} config: model.conv_kernel must be odd")
    if len(parsed.dims) < 2 or parsed.dims[0] != 2 * parsed.audio_channels:
        raise ModelError(
            f"{FAMILY} config: model.dims must start with 2 x audio_channels "
            f"({2 * parsed.audio_channels}, real and imaginary parts) and have two or more values"
        )
    if not isinstance(parsed.num_dplayer, int) or parsed.num_dplayer < 0 or parsed.num_dplayer % 2:
        raise ModelError(
            f"{FAMILY} config: model.num_dplayer must be even (time and frequency pairs)"
        )
    if masked and parsed.audio_channels != 2:
        raise ModelError(f"{FAMILY} config: scnet_masked is stereo only")
    return parsed


@dataclass(frozen=True)
class SCNetParts:
    """What an MSST yaml gives SCNet's constructor (`parse_scnet`)."""

    config: SCNetConfig
    info: ModelInfo


def parse_scnet(config: Mapping[str, Any], masked: bool = False) -> SCNetParts:
    """An MSST yaml's SCNet parts: the model section checked (unknown keys refused),
    the stems, sample rate and recipe."""
    model = msst_config.section(config, "model", FAMILY, required=True)
    parsed = scnet_config(model, masked=masked)
    channels = msst_config.section(config, "audio", FAMILY).get("num_channels")
    if channels not in (None, parsed.audio_channels):
        raise ModelError(
            f"{FAMILY} config: audio.num_channels {channels} disagrees with "
            f"model.audio_channels {parsed.audio_channels}"
        )
    info = msst_config.model_info(config, len(parsed.sources), FAMILY,
                                  "the count of model.sources")  # fmt: skip
    return SCNetParts(parsed, info)


def build_scnet(model_type: str, config: Mapping[str, Any]) -> SCNet:
    """An untrained SCNet (`scnet`) or masked SCNet (`scnet_masked`) from an MSST yaml."""
    if model_type not in MODEL_TYPES:
        raise ModelError(f"build_scnet builds {' or '.join(MODEL_TYPES)}, not {model_type!r}")
    parts = parse_scnet(config, masked=model_type == "scnet_masked")
    return SCNet(parts.config, parts.info)
