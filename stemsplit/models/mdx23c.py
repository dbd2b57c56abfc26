"""MDX23C: the TFC-TDF v3 U-Net of Music-Source-Separation-Training (`mdx23c`).

Built from an MSST yaml (`build_mdx23c`); the state dict has MSST's key names, so
MSST checkpoints load strictly. The network, for a chunk `mix[B, C, L]`:

1. STFT (hann of `n_fft`, centred) kept to the first `dim_f` bins, real and imaginary
   parts as channels ("complex as channels"): `[B, 2C, dim_f, T]`; then the
   frequency axis is cut into `num_subbands` sub-bands stacked as channels
   (`[B, 2C*k, dim_f/k, T]`, "channels with subbands").
2. A 1x1 `first_conv`, then a U-Net over (time, frequency): `num_scales` encoder
   levels of TFC-TDF blocks (3x3 convs around a bottleneck linear layer over
   frequency) each followed by a strided downscale (`scale` = (time, frequency)
   factors, `growth` more channels), a bottleneck, and mirrored decoder levels that
   concatenate the encoder's output.
3. The result times `first_conv`'s output, concatenated with the input spectrogram,
   through a 1x1 `final_conv` to `stems * 2C*k` channels; back to bins, zero bins
   above `dim_f`, inverse STFT.

State (c = num_channels, g = growth, f = dim_f / num_subbands, d = 2 * channels *
num_subbands, level i has c + i*g channels and f / scale[1]**i bins):
- `first_conv.weight` [c, d, 1, 1]
- `encoder_blocks.{i}.tfc_tdf.blocks.{j}.{tfc1,tfc2}.{0: norm, 2: conv 3x3}`,
  `.tdf.{0: norm, 2: linear [f/bn, f], 3: norm, 5: linear [f, f/bn]}`, `.shortcut` 1x1
- `encoder_blocks.{i}.downscale.conv.{0: norm, 2: conv [c+g, c, *scale]}`
- `bottleneck_block.blocks.{j}...` as above
- `decoder_blocks.{i}.upscale.conv.{0: norm, 2: transposed conv [c+g, c, *scale]}`,
  `decoder_blocks.{i}.tfc_tdf.blocks.{j}...` (first block takes 2c channels)
- `final_conv.{0: conv [c, c + d], 2: conv [stems * d, c]}`
Norm layers: InstanceNorm (affine: weight, bias), BatchNorm (plus running stats),
GroupNormN, or none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo

FAMILY = "MDX23C"


@dataclass(frozen=True)
class MDX23CConfig:
    """Hyperparameters of TFC-TDF v3 (MSST's `audio` STFT keys and `model` section)."""

    num_stems: int
    n_fft: int = 8192
    hop_length: int = 1024
    dim_f: int = 4096
    audio_channels: int = 2
    num_subbands: int = 4
    num_scales: int = 5
    scale: tuple[int, int] = (2, 2)
    num_blocks_per_scale: int = 2
    num_channels: int = 128
    growth: int = 128
    bottleneck_factor: int = 4
    norm: str = "InstanceNorm"
    act: str = "gelu"

    @property
    def input_channels(self) -> int:
        """Channels of the sub-band spectrogram: 2 (real, imaginary) x audio x subbands."""
        return 2 * self.audio_channels * self.num_subbands


def _norm_factory(kind: str) -> Callable[[int], nn.Module]:
    if kind == "BatchNorm":
        return nn.BatchNorm2d
    if kind == "InstanceNorm":
        return lambda channels: nn.InstanceNorm2d(channels, affine=True)
    if "GroupNorm" in kind:
        groups = int(kind.replace("GroupNorm", ""))
        return lambda channels: nn.GroupNorm(groups, channels)
    return lambda channels: nn.Identity()  # MSST: any other name means no norm


def _activation(kind: str) -> nn.Module:
    if kind == "gelu":
        return nn.GELU()
    if kind == "relu":
        return nn.ReLU()
    if kind.startswith("elu"):
        return nn.ELU(float(kind[3:]))
    raise ModelError(f"{FAMILY} config: model.act must be gelu, relu or eluALPHA, got {kind!r}")


class _Layer(nn.Module):
    """One TFC-TDF layer: conv, frequency bottleneck (residual), conv, plus a shortcut."""

    def __init__(self, in_channels: int, channels: int, bins: int, config: MDX23CConfig) -> None:
        super().__init__()
        norm, act = _norm_factory(config.norm), _activation(config.act)
        hidden = bins // config.bottleneck_factor
        self.tfc1 = nn.Sequential(
            norm(in_channels), act, nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        )
        self.tdf = nn.Sequential(
            norm(channels), act, nn.Linear(bins, hidden, bias=False),
            norm(channels), act, nn.Linear(hidden, bins, bias=False),
        )  # fmt: skip
        self.tfc2 = nn.Sequential(
            norm(channels), act, nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        )
        self.shortcut = nn.Conv2d(in_channels, channels, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, in_channels, time, bins] -> [B, channels, time, bins]."""
        shortcut = self.shortcut(x)
        x = self.tfc1(x)
        x = x + self.tdf(x)
        return self.tfc2(x) + shortcut


class _TfcTdf(nn.Module):
    def __init__(self, in_channels: int, channels: int, bins: int, config: MDX23CConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _Layer(in_channels if index == 0 else channels, channels, bins, config)
            for index in range(config.num_blocks_per_scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class _Resample(nn.Module):
    """Norm, activation and a (transposed) conv of kernel = stride = `scale`."""

    def __init__(self, in_channels: int, out_channels: int, config: MDX23CConfig, up: bool) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = nn.Sequential(
            _norm_factory(config.norm)(in_channels),
            _activation(config.act),
            conv(in_channels, out_channels, config.scale, config.scale, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _EncoderBlock(nn.Module):
    """One U-Net scale on the way down (key names `tfc_tdf`, `downscale` as MSST's)."""

    def __init__(self, tfc_tdf: _TfcTdf, downscale: _Resample) -> None:
        super().__init__()
        self.tfc_tdf = tfc_tdf
        self.downscale = downscale


class _DecoderBlock(nn.Module):
    """One U-Net scale on the way up (key names `upscale`, `tfc_tdf` as MSST's)."""

    def __init__(self, upscale: _Resample, tfc_tdf: _TfcTdf) -> None:
        super().__init__()
        self.upscale = upscale
        self.tfc_tdf = tfc_tdf


class MDX23C(nn.Module):
    """TFC-TDF v3 with the model protocol's metadata (see the module docstring)."""

    window: torch.Tensor  # buffer (register_buffer in __init__)

    def __init__(
        self,
        config: MDX23CConfig,
        info: ModelInfo,
    ) -> None:
        super().__init__()
        if len(info.sources) != config.num_stems:
            raise ModelError(
                f"{FAMILY}: {len(info.sources)} source names for {config.num_stems} stems"
            )
        self.config = config
        info.attach(self)
        self.audio_channels = config.audio_channels
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

        channels, growth = config.num_channels, config.growth
        bins = config.dim_f // config.num_subbands
        self.first_conv = nn.Conv2d(config.input_channels, channels, 1, 1, 0, bias=False)
        self.encoder_blocks = nn.ModuleList()
        for _ in range(config.num_scales):
            self.encoder_blocks.append(
                _EncoderBlock(
                    _TfcTdf(channels, channels, bins, config),
                    _Resample(channels, channels + growth, config, up=False),
                )
            )
            bins //= config.scale[1]
            channels += growth
        self.bottleneck_block = _TfcTdf(channels, channels, bins, config)
        self.decoder_blocks = nn.ModuleList()
        for _ in range(config.num_scales):
            upscale = _Resample(channels, channels - growth, config, up=True)
            bins *= config.scale[1]
            channels -= growth
            self.decoder_blocks.append(
                _DecoderBlock(upscale, _TfcTdf(2 * channels, channels, bins, config))
            )
        self.final_conv = nn.Sequential(
            nn.Conv2d(channels + config.input_channels, channels, 1, 1, 0, bias=False),
            _activation(config.act),
            nn.Conv2d(channels, config.num_stems * config.input_channels, 1, 1, 0, bias=False),
        )

    def valid_length(self, length: int) -> int:
        """Any length works: forward pads to whole hops and a frame count the U-Net
        halves evenly (MSST's chunk sizes, hop * (dim_t - 1), need no padding)."""
        return length

    def _padded_length(self, length: int) -> int:
        hop, factor = self.config.hop_length, self.config.scale[0] ** self.config.num_scales
        frames = -(-length // hop) + 1
        frames += (-frames) % factor
        return (frames - 1) * hop

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: [B, C, L] -> stems [B, S, C, L]."""
        config = self.config
        batch, channels, length = mix.shape
        if channels != config.audio_channels:
            raise ValueError(f"expected {config.audio_channels} audio channels, got {channels}")
        padded = self._padded_length(length)
        x = F.pad(mix, (0, padded - length)) if padded != length else mix
        spec = torch.stft(
            x.reshape(-1, padded), config.n_fft, config.hop_length, window=self.window,
            center=True, return_complex=True,
        )  # fmt: skip
        frames = spec.shape[-1]
        spec = torch.view_as_real(spec).permute(0, 3, 1, 2)  # [B*C, 2, bins, T]
        spec = spec.reshape(batch, 2 * channels, -1, frames)[:, :, : config.dim_f]
        k = config.num_subbands
        mixture = spec.reshape(batch, 2 * channels * k, config.dim_f // k, frames)

        first = self.first_conv(mixture)
        x = first.transpose(-1, -2)  # [B, ch, time, bins]
        skips = []
        for encoder in cast("Iterable[_EncoderBlock]", self.encoder_blocks):
            x = encoder.tfc_tdf(x)
            skips.append(x)
            x = encoder.downscale(x)
        x = self.bottleneck_block(x)
        for decoder in cast("Iterable[_DecoderBlock]", self.decoder_blocks):
            x = torch.cat([decoder.upscale(x), skips.pop()], 1)
            x = decoder.tfc_tdf(x)
        x = x.transpose(-1, -2) * first
        x = self.final_conv(torch.cat([mixture, x], 1))  # [B, S*2C*k, dim_f/k, T]

        x = x.reshape(batch, config.num_stems, 2 * channels, config.dim_f, frames)
        x = F.pad(x, (0, 0, 0, config.n_fft // 2 + 1 - config.dim_f))
        x = x.reshape(-1, 2, config.n_fft // 2 + 1, frames).permute(0, 2, 3, 1)
        audio = torch.istft(
            torch.view_as_complex(x.contiguous()), config.n_fft, config.hop_length,
            window=self.window, center=True, length=padded,
        )  # fmt: skip
        return audio.reshape(batch, config.num_stems, channels, padded)[..., :length]


_MODEL_KEYS = (
    "act", "bottleneck_factor", "growth", "norm", "num_blocks_per_scale", "num_channels",
    "num_scales", "num_subbands", "scale",
)  # fmt: skip


def mdx23c_config(config: Mapping[str, Any], num_stems: int) -> MDX23CConfig:
    """Read MSST's `audio` and `model` sections (MSST ignores unknown keys; so do we)."""
    audio = msst_config.section(config, "audio", FAMILY, required=True)
    model = msst_config.section(config, "model", FAMILY, required=True)
    missing = [key for key in _MODEL_KEYS if key not in model]
    if missing:
        raise ModelError(f"{FAMILY} config: model section lacks {missing}")

    def integer(values: Mapping[str, Any], key: str, where: str) -> int:
        return msst_config.positive_int(values, key, None, where, FAMILY)

    scale = model["scale"]
    if not (
        isinstance(scale, (list, tuple)) and len(scale) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in scale)
    ):  # fmt: skip
        raise ModelError(f"{FAMILY} config: model.scale must be two positive integers")
    growth = model["growth"]
    if isinstance(growth, bool) or not isinstance(growth, int) or growth < 0:
        raise ModelError(f"{FAMILY} config: model.growth must be a non-negative integer")
    for key in ("norm", "act"):
        if not isinstance(model[key], str):
            raise ModelError(f"{FAMILY} config: model.{key} must be a name")
    parsed = MDX23CConfig(
        num_stems=num_stems,
        n_fft=integer(audio, "n_fft", "audio"),
        hop_length=integer(audio, "hop_length", "audio"),
        dim_f=integer(audio, "dim_f", "audio"),
        audio_channels=integer(audio, "num_channels", "audio"),
        num_subbands=integer(model, "num_subbands", "model"),
        num_scales=integer(model, "num_scales", "model"),
        scale=(scale[0], scale[1]),
        num_blocks_per_scale=integer(model, "num_blocks_per_scale", "model"),
        num_channels=integer(model, "num_channels", "model"),
        growth=model["growth"],
        bottleneck_factor=integer(model, "bottleneck_factor", "model"),
        norm=model["norm"],
        act=model["act"],
    )
    _activation(parsed.act)  # rejects an unknown activation now
    if parsed.audio_channels != 2:
        raise ModelError(f"{FAMILY}: MSST's TFC-TDF v3 is stereo only (audio.num_channels 2)")
    if parsed.dim_f > parsed.n_fft // 2 + 1:
        raise ModelError(f"{FAMILY} config: audio.dim_f exceeds n_fft // 2 + 1 bins")
    divisor = parsed.num_subbands * parsed.scale[1] ** parsed.num_scales
    if parsed.dim_f % divisor:
        raise ModelError(
            f"{FAMILY} config: audio.dim_f {parsed.dim_f} must divide by num_subbands x "
            f"scale[1]**num_scales = {divisor}"
        )
    return parsed


def build_mdx23c(model_type: str, config: Mapping[str, Any]) -> MDX23C:
    """An untrained MDX23C from a parsed MSST yaml (stems, recipe and network)."""
    if model_type != "mdx23c":
        raise ModelError(f"build_mdx23c builds mdx23c, not {model_type!r}")
    info = msst_config.model_info(config, None, FAMILY)
    return MDX23C(mdx23c_config(config, len(info.sources)), info)
