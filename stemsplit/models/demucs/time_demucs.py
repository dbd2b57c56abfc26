"""Demucs v3's waveform-only U-Net (demucs 4.1 `demucs.py`, class `Demucs`).

Some MDX bags mix it with hybrid models. The network upsamples the input x2 with a
windowed-sinc resampler (julius' `resample_frac`, reimplemented here), runs strided
convolutions without padding (inputs are padded to `valid_length`) and skips that
are centre-trimmed. Built from a `DemucsConfig` (demucs' keywords and defaults);
state_dict keys are demucs'.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.models.base import Recipe
from stemsplit.models.demucs.config import DemucsConfig
from stemsplit.models.demucs.layers import BLSTM, DConv, dconv_options


@functools.lru_cache(maxsize=4)
def _sinc_kernels(
    old_rate: int, new_rate: int, zeros: int = 24, rolloff: float = 0.945
) -> tuple[torch.Tensor, int]:
    """julius' polyphase windowed-sinc kernels `[new_rate, 1, K]` and their half width."""
    cutoff = min(old_rate, new_rate) * rolloff
    width = math.ceil(zeros * old_rate / cutoff)
    idx = torch.arange(-width, width + old_rate).float()
    kernels = []
    for phase in range(new_rate):
        t = ((-phase / new_rate + idx / old_rate) * cutoff).clamp(-zeros, zeros) * math.pi
        window = torch.cos(t / zeros / 2) ** 2
        sinc = torch.where(t == 0, torch.tensor(1.0), torch.sin(t) / t)
        kernel = sinc * window
        kernels.append(kernel / kernel.sum())
    return torch.stack(kernels).view(new_rate, 1, -1), width


def resample_frac(x: torch.Tensor, old_rate: int, new_rate: int) -> torch.Tensor:
    """Resample the last axis by `new_rate / old_rate` (small coprime integers), floor length."""
    kernel, width = _sinc_kernels(old_rate, new_rate)
    *shape, length = x.shape
    padded = F.pad(x.reshape(-1, 1, length), (width, width + old_rate), mode="replicate")
    y = F.conv1d(padded, kernel.to(x), stride=old_rate)
    y = y.transpose(1, 2).reshape(*shape, -1)
    return y[..., : math.floor(new_rate * length / old_rate)]


def center_trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop the last axis to `length` around its centre (the extra sample goes right)."""
    delta = x.shape[-1] - length
    if delta < 0:
        raise ValueError(f"cannot trim {x.shape[-1]} samples to {length}")
    return x[..., delta // 2 : x.shape[-1] - (delta - delta // 2)]


class Demucs(nn.Module):
    """`forward(mix: [B, C, T]) -> [B, S, C, T]`, any T (padded to `valid_length` inside)."""

    residual: str | None = None

    def __init__(self, config: DemucsConfig) -> None:
        super().__init__()
        self.config = config
        self.sources = list(config.sources)
        self.audio_channels = config.audio_channels
        self.samplerate = config.samplerate
        self.segment = config.segment  # a bag may change it (the recipe follows)
        self.kernel_size = kernel_size = config.kernel_size
        self.stride = stride = config.stride
        self.depth = config.depth
        self.resample = config.resample
        self.normalize = config.normalize
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.skip_scales = nn.ModuleList()  # empty; kept for demucs' module layout
        glu, rewrite, context = config.glu, config.rewrite, config.context
        scale = 2 if glu else 1

        def activation() -> nn.Module:
            return nn.GLU(dim=1) if glu else nn.ReLU()

        def act2() -> nn.Module:
            return nn.GELU() if config.gelu else nn.ReLU()

        in_channels, channels = config.audio_channels, config.channels
        for index in range(config.depth):

            def norm(dim: int, index: int = index) -> nn.Module:
                if index >= config.norm_starts:
                    return nn.GroupNorm(config.norm_groups, dim)
                return nn.Identity()

            dconv_kw = dconv_options(config.dconv, index)
            encode: list[nn.Module] = [
                nn.Conv1d(in_channels, channels, kernel_size, stride), norm(channels), act2()
            ]  # fmt: skip
            if config.dconv.mode & 1:
                encode.append(DConv(channels, **dconv_kw))
            if rewrite:
                encode += [nn.Conv1d(channels, scale * channels, 1), norm(scale * channels),
                           activation()]  # fmt: skip
            self.encoder.append(nn.Sequential(*encode))

            out_channels = in_channels if index > 0 else len(self.sources) * self.audio_channels
            decode: list[nn.Module] = []
            if rewrite:
                decode += [
                    nn.Conv1d(channels, scale * channels, 2 * context + 1, padding=context),
                    norm(scale * channels), activation(),
                ]  # fmt: skip
            if config.dconv.mode & 2:
                decode.append(DConv(channels, **dconv_kw))
            decode.append(nn.ConvTranspose1d(channels, out_channels, kernel_size, stride))
            if index > 0:
                decode += [norm(out_channels), act2()]
            self.decoder.insert(0, nn.Sequential(*decode))
            in_channels = channels
            channels = int(config.growth * channels)
        lstm_layers = config.lstm_layers
        self.lstm = BLSTM(in_channels, lstm_layers) if lstm_layers else None

    @property
    def recipe(self) -> Recipe:
        """Demucs' apply_model settings; follows `segment` when a bag overrides it."""
        return Recipe(
            segment_samples=int(self.segment * self.samplerate),
            overlap=0.25,
            window="triangle",
            padding="context",
            normalization="track-mean-std",
            batch_size=1,
        )

    def valid_length(self, length: int) -> int:
        """Smallest input length >= `length` the unpadded conv stack consumes without rest."""
        if self.resample:
            length *= 2
        for _ in range(self.depth):
            length = max(1, math.ceil((length - self.kernel_size) / self.stride) + 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        length = mix.shape[-1]
        x = mix
        if self.normalize:
            mono = mix.mean(dim=1, keepdim=True)
            mean = mono.mean(dim=-1, keepdim=True)
            std = mono.std(dim=-1, keepdim=True)
            x = (x - mean) / (1e-5 + std)
        delta = self.valid_length(length) - length
        x = F.pad(x, (delta // 2, delta - delta // 2))
        if self.resample:
            x = resample_frac(x, 1, 2)
        saved = []
        for encode in self.encoder:
            x = encode(x)
            saved.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for decode in self.decoder:
            x = decode(x + center_trim(saved.pop(), x.shape[-1]))
        if self.resample:
            x = resample_frac(x, 2, 1)
        if self.normalize:
            x = x * std + mean
        x = center_trim(x, length)
        return x.view(x.shape[0], len(self.sources), self.audio_channels, length)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        """Also accepts older checkpoints whose layers had no activation at index 2."""
        state = dict(state_dict)
        for idx in range(self.depth):
            for part in ("encoder", "decoder"):
                for name in ("bias", "weight"):
                    new, old = f"{part}.{idx}.3.{name}", f"{part}.{idx}.2.{name}"
                    if old in state and new not in state:
                        state[new] = state.pop(old)
        return super().load_state_dict(state, strict=strict, assign=assign)
