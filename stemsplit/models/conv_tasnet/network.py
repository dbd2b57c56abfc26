"""Conv-TasNet as in Demucs v2 (the `tasnet` / `tasnet_extra` checkpoints).

Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for
Speech Separation" (2019), as adapted by Demucs v2 (`demucs/tasnet.py`, 2.0.3) to
several stereo sources: a learned encoder (Conv1d, stride L/2, ReLU), a temporal
convolutional network that predicts one mask per source, and a linear decoder whose
frames are overlap-added. The module and parameter names follow Demucs v2 so its plain
state_dicts load strictly:

    encoder.conv1d_U                       Conv1d(audio_channels, N, L), no bias
    separator.network.0                    channel-wise LayerNorm (gamma, beta)
    separator.network.1                    bottleneck Conv1d(N, B, 1)
    separator.network.2.<r>.<x>.net        temporal block: 1x1 conv, PReLU, norm, and
                                           .3.net: depthwise dilated conv, PReLU, norm,
                                           pointwise conv (a parameter-free trim when causal)
    separator.network.3                    mask Conv1d(B, sources * N, 1)
    decoder.basis_signals                  Linear(N, audio_channels * L), no bias

Shapes: `M` batch, `S` sources, `N` filters, `K` encoder frames, `T` samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe

EPS = 1e-8
NORM_TYPES = ("gLN", "cLN", "BN", "id")
MASK_NONLINEARS = ("relu", "softmax")
DEFAULT_SOURCES = ("drums", "bass", "other", "vocals")
DEFAULT_SAMPLERATE = 44100
DEFAULT_SEGMENT_LENGTH = 44100 * 2 * 4  # Demucs v2's constructor default: 8 s


@dataclass(frozen=True)
class ConvTasNetConfig:
    """Demucs v2's ConvTasNet constructor arguments, under their upstream names.

    The defaults are the constructor's (X=8); the pretrained `tasnet` models use X=10.
    """

    sources: tuple[str, ...]
    N: int = 256  # encoder filters
    L: int = 20  # filter length in samples (encoder stride L // 2)
    B: int = 256  # bottleneck channels
    H: int = 512  # channels inside a temporal block
    P: int = 3  # depthwise kernel size
    X: int = 8  # blocks per repeat (dilations 1, 2, ..., 2**(X-1))
    R: int = 4  # repeats
    audio_channels: int = 2
    norm_type: str = "gLN"
    causal: bool = False
    mask_nonlinear: str = "relu"
    samplerate: int = DEFAULT_SAMPLERATE
    segment_length: int = DEFAULT_SEGMENT_LENGTH

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ConvTasNetConfig:
        """Validate constructor kwargs (as in a Demucs v2 checkpoint's args)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ModelError(
                f"unknown Conv-TasNet arguments {unknown}: expected some of {sorted(known)}"
            )
        if "sources" not in kwargs:
            raise ModelError("Conv-TasNet arguments lack 'sources': give the list of stem names")
        sources = kwargs["sources"]
        if (
            isinstance(sources, str)
            or not all(isinstance(s, str) and s for s in sources)
            or not sources
            or len(set(sources)) != len(sources)
        ):
            raise ModelError(f"Conv-TasNet 'sources' must be distinct stem names, got {sources!r}")
        config = cls(**{**kwargs, "sources": tuple(sources)})
        config._check()
        return config

    def _check(self) -> None:
        for name in ("N", "L", "B", "H", "P", "X", "R", "audio_channels", "samplerate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(
                    f"Conv-TasNet argument {name} must be a positive int, got {value!r}"
                )
        if self.L < 2:
            raise ModelError(f"Conv-TasNet filter length L must be at least 2, got {self.L}")
        if not isinstance(self.segment_length, int) or self.segment_length < self.L:
            raise ModelError(
                f"Conv-TasNet segment_length must be an int >= L={self.L}, got {self.segment_length!r}"
            )
        if self.norm_type not in NORM_TYPES:
            raise ModelError(f"Conv-TasNet norm_type {self.norm_type!r}: use one of {NORM_TYPES}")
        if self.mask_nonlinear not in MASK_NONLINEARS:
            raise ModelError(
                f"Conv-TasNet mask_nonlinear {self.mask_nonlinear!r}: use one of {MASK_NONLINEARS}"
            )
        if not isinstance(self.causal, bool):
            raise ModelError(f"Conv-TasNet 'causal' must be a bool, got {self.causal!r}")
        if not self.causal and self.P % 2 == 0:
            # Upstream pads (P - 1) * dilation // 2 on both sides: the length changes and
            # the residual addition fails for an even kernel.
            raise ModelError(f"Conv-TasNet kernel size P must be odd when not causal, got {self.P}")

    def to_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs under Demucs v2's names (sources as a list)."""
        kwargs = asdict(self)
        kwargs["sources"] = list(self.sources)
        return kwargs


class GlobalLayerNorm(nn.Module):
    """gLN: one mean and variance over channels and time per item; affine per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, C, K] -> [M, C, K]."""
        mean = x.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + EPS) + self.beta


class ChannelwiseLayerNorm(nn.Module):
    """cLN: mean and (biased) variance over channels, separately at each frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, C, K] -> [M, C, K]."""
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return self.gamma * (x - mean) / torch.sqrt(var + EPS) + self.beta


def make_norm(norm_type: str, channels: int) -> nn.Module:
    """The normalisation layer Demucs v2's `chose_norm` builds for `norm_type`."""
    if norm_type == "gLN":
        return GlobalLayerNorm(channels)
    if norm_type == "cLN":
        return ChannelwiseLayerNorm(channels)
    if norm_type == "id":
        return nn.Identity()
    return nn.BatchNorm1d(channels)


class TrimRight(nn.Module):
    """Drops the last `size` frames: a causal convolution's look-ahead (upstream Chomp1d)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : -self.size] if self.size else x


class DepthwiseSeparableConv(nn.Module):
    """Dilated depthwise conv, PReLU, norm, then pointwise conv H -> B."""

    def __init__(self, config: ConvTasNetConfig, dilation: int) -> None:
        super().__init__()
        hidden, kernel = config.H, config.P
        padding = (kernel - 1) * dilation
        if not config.causal:
            padding //= 2
        layers: list[nn.Module] = [
            nn.Conv1d(
                hidden,
                hidden,
                kernel,
                padding=padding,
                dilation=dilation,
                groups=hidden,
                bias=False,
            )
        ]
        if config.causal:
            layers.append(TrimRight(padding))
        layers += [
            nn.PReLU(),
            make_norm(config.norm_type, hidden),
            nn.Conv1d(hidden, config.B, 1, bias=False),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, H, K] -> [M, B, K]."""
        return self.net(x)


class TemporalBlock(nn.Module):
    """Residual block: 1x1 conv B -> H, PReLU, norm, depthwise-separable conv H -> B."""

    def __init__(self, config: ConvTasNetConfig, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(config.B, config.H, 1, bias=False),
            nn.PReLU(),
            make_norm(config.norm_type, config.H),
            DepthwiseSeparableConv(config, dilation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, B, K] -> [M, B, K] (no activation after the sum, as upstream)."""
        return x + self.net(x)


class MaskNetwork(nn.Module):
    """The temporal convolutional network: encoder frames to one mask per source."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.num_sources = len(config.sources)
        self.mask_nonlinear = config.mask_nonlinear
        repeats = [
            nn.Sequential(*[TemporalBlock(config, 2**x) for x in range(config.X)])
            for _ in range(config.R)
        ]
        self.network = nn.Sequential(
            ChannelwiseLayerNorm(config.N),
            nn.Conv1d(config.N, config.B, 1, bias=False),
            nn.Sequential(*repeats),
            nn.Conv1d(config.B, self.num_sources * config.N, 1, bias=False),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[M, N, K] -> masks [M, S, N, K]."""
        batch, filters, length = frames.shape
        score = self.network(frames).view(batch, self.num_sources, filters, length)
        if self.mask_nonlinear == "softmax":
            return F.softmax(score, dim=1)
        return F.relu(score)


class Encoder(nn.Module):
    """Non-negative encoder frames: ReLU(Conv1d(audio_channels -> N, L, stride L // 2))."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.conv1d_U = nn.Conv1d(
            config.audio_channels, config.N, config.L, stride=config.L // 2, bias=False
        )

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """[M, C, T] -> [M, N, K] with K = (T - L) // (L // 2) + 1."""
        return F.relu(self.conv1d_U(mix))


def overlap_and_add(frames: torch.Tensor, step: int) -> torch.Tensor:
    """[..., K, L] frames hopped by `step` -> [..., (K - 1) * step + L] summed signal."""
    *outer, count, length = frames.shape
    total = (count - 1) * step + length
    columns = frames.reshape(-1, count, length).transpose(1, 2)  # [X, L, K]
    signal = F.fold(columns, output_size=(1, total), kernel_size=(1, length), stride=(1, step))
    return signal.reshape(*outer, total)


class Decoder(nn.Module):
    """Masked frames to waveforms: a linear basis per frame, then overlap-add."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.audio_channels = config.audio_channels
        self.filter_length = config.L
        self.basis_signals = nn.Linear(config.N, config.audio_channels * config.L, bias=False)

    def forward(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """frames [M, N, K], masks [M, S, N, K] -> [M, S, C, (K - 1) * (L // 2) + L]."""
        masked = (frames.unsqueeze(1) * masks).transpose(2, 3)  # [M, S, K, N]
        basis = self.basis_signals(masked)  # [M, S, K, C * L]
        batch, sources, count, _ = basis.shape
        basis = basis.view(batch, sources, count, self.audio_channels, self.filter_length)
        return overlap_and_add(basis.transpose(2, 3), self.filter_length // 2)


class ConvTasNet(nn.Module):
    """Demucs v2's multi-source, multi-channel Conv-TasNet with the stemsplit protocol."""

    residual = None

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.config = config
        self.sources = list(config.sources)
        self.samplerate = config.samplerate
        self.audio_channels = config.audio_channels
        self.segment_length = config.segment_length
        # Demucs v2 separate: apply_model(split=True, overlap=0.25) over chunks of
        # segment_length, triangle weights, the track normalised by its mono mix.
        self.recipe = Recipe(
            segment_samples=config.segment_length,
            overlap=0.25,
            window="triangle",
            padding="context",
            normalization="track-mean-std",
            batch_size=1,
        )
        self.encoder = Encoder(config)
        self.separator = MaskNetwork(config)
        self.decoder = Decoder(config)
        for parameter in self.parameters():
            if parameter.dim() > 1:  # upstream's init, for randomly built models
                nn.init.xavier_normal_(parameter)

    def valid_length(self, length: int) -> int:
        """Demucs v2 feeds chunks as they are (identity); at least one encoder frame."""
        return max(length, self.config.L)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix [M, C, T] -> stems [M, S, C, T].

        Samples past the last whole encoder frame come out as zeros, as upstream.
        """
        length = mix.shape[-1]
        if length < self.config.L:
            raise ValueError(f"Conv-TasNet needs at least L={self.config.L} samples, got {length}")
        frames = self.encoder(mix)
        stems = self.decoder(frames, self.separator(frames))
        return F.pad(stems, (0, length - stems.shape[-1]))


def build_conv_tasnet(kwargs: dict[str, Any]) -> ConvTasNet:
    """A randomly initialised model from Demucs v2 constructor kwargs (ModelError if bad)."""
    return ConvTasNet(ConvTasNetConfig.from_kwargs(kwargs))
