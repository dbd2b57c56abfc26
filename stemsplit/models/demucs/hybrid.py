"""The two-branch U-Net shared by HDemucs (v3) and HTDemucs (v4).

A frequency branch convolves the (complex-as-channels) spectrogram along frequency
until one bin is left; a time branch convolves the waveform with the same strides
and is added into the frequency branch where both have the same frame rate. The
decoder mirrors this, and the model's output is the ISTFT of the frequency branch
plus the time branch. Layer layout and arithmetic follow demucs 4.1 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar, cast

import torch
from torch import nn

from stemsplit.models.base import Recipe
from stemsplit.models.demucs import spec
from stemsplit.models.demucs.hybrid_config import HybridConfig
from stemsplit.models.demucs.hybrid_layers import HDecLayer, HEncLayer, MultiWrap, ScaledEmbedding
from stemsplit.models.demucs.layers import DConvOptions, dconv_options

_TimeLayer = TypeVar("_TimeLayer", HEncLayer, HDecLayer)


class _Stats(NamedTuple):
    """Input normalisation of each branch, undone at the output."""

    mean: torch.Tensor
    std: torch.Tensor
    mean_t: torch.Tensor | None
    std_t: torch.Tensor | None


@dataclass
class _Skips:
    """What the encoder leaves for the decoder (U-Net skips and pre-stride lengths)."""

    freq: list[torch.Tensor] = field(default_factory=list)
    time: list[torch.Tensor] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    lengths_t: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _LayerSpec:
    """What one U-Net level's encoder and decoder layers share (demucs' `kw`)."""

    kernel_size: int
    stride: int
    freq: bool
    pad: bool
    norm: bool
    rewrite: bool
    norm_groups: int
    dconv_kw: DConvOptions
    context_freq: bool = True  # decoders only: False in MultiWrap bands

    def encoder(
        self, chin: int, chout: int, *, dconv: bool, context: int, empty: bool = False
    ) -> HEncLayer:
        return HEncLayer(
            chin, chout, kernel_size=self.kernel_size, stride=self.stride,
            norm_groups=self.norm_groups, empty=empty, freq=self.freq, dconv=dconv,
            norm=self.norm, context=context, dconv_kw=self.dconv_kw, pad=self.pad,
            rewrite=self.rewrite,
        )  # fmt: skip

    def decoder(
        self, chin: int, chout: int, *, dconv: bool, context: int, last: bool,
        empty: bool = False,
    ) -> HDecLayer:  # fmt: skip
        return HDecLayer(
            chin, chout, last=last, kernel_size=self.kernel_size, stride=self.stride,
            norm_groups=self.norm_groups, empty=empty, freq=self.freq, dconv=dconv,
            norm=self.norm, context=context, dconv_kw=self.dconv_kw, pad=self.pad,
            context_freq=self.context_freq, rewrite=self.rewrite,
        )  # fmt: skip


class HybridUNet(nn.Module):
    """Base of HDemucs/HTDemucs: builds the branches; forward parts for subclasses."""

    sources: list[str]
    samplerate: int
    audio_channels: int
    segment: float
    residual: str | None = None

    def _build_unet(self, config: HybridConfig) -> None:
        """Create encoder/decoder (and tencoder/tdecoder) with demucs' names and shapes."""
        self.sources = list(config.sources)
        self.audio_channels = config.audio_channels
        self.samplerate = config.samplerate
        self.segment = config.segment  # a bag may change it (the recipe follows)
        self.cac = config.cac
        self.wiener_iters = config.wiener_iters
        self.depth = config.depth
        self.nfft = config.nfft
        self.hop_length = config.nfft // 4
        self.hybrid = config.hybrid
        self.hybrid_old = config.hybrid_old
        self.freq_emb: ScaledEmbedding | None = None
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        if config.hybrid:
            self.tencoder = nn.ModuleList()
            self.tdecoder = nn.ModuleList()

        kernel_size, stride = config.kernel_size, config.stride
        dconv_enc, dconv_dec = bool(config.dconv.mode & 1), bool(config.dconv.mode & 2)
        context, context_enc = config.context, config.context_enc
        chin = config.audio_channels
        chin_z = chin * 2 if config.cac else chin  # freq branch channels
        chout = config.channels_time or config.channels
        chout_z = config.channels
        freqs = config.nfft // 2
        for index in range(config.depth):
            freq = freqs > 1
            ker, stri, pad, last_freq = kernel_size, stride, True, False
            if not freq:  # past the last frequency layer: plain time convolutions
                ker, stri = config.time_stride * 2, config.time_stride
            elif freqs <= kernel_size:  # last freq layer: collapse the remaining bins
                ker, pad, last_freq = freqs, False, True
            spec_z = _LayerSpec(
                kernel_size=ker, stride=stri, freq=freq, pad=pad,
                norm=index >= config.norm_starts, rewrite=config.rewrite,
                norm_groups=config.norm_groups, dconv_kw=dconv_options(config.dconv, index),
            )  # fmt: skip
            spec_t = replace(spec_z, freq=False, kernel_size=kernel_size, stride=stride, pad=True)
            multi_freqs = config.multi_freqs if index < config.multi_freqs_depth else None
            bands = list(multi_freqs) if multi_freqs else None
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z

            enc = spec_z.encoder(chin_z, chout_z, dconv=dconv_enc, context=context_enc)
            if config.hybrid and freq:
                self.tencoder.append(
                    spec_t.encoder(chin, chout, dconv=dconv_enc, context=context_enc,
                                   empty=last_freq)
                )  # fmt: skip
            self.encoder.append(enc if bands is None else MultiWrap(enc, bands))
            if index == 0:
                chin = config.audio_channels * len(self.sources)
                chin_z = chin * 2 if config.cac else chin
            spec_dec = spec_z if bands is None else replace(spec_z, context_freq=False)
            dec = spec_dec.decoder(chout_z, chin_z, dconv=dconv_dec, context=context,
                                   last=index == 0)  # fmt: skip
            if config.hybrid and freq:
                self.tdecoder.insert(
                    0,
                    spec_t.decoder(chout, chin, dconv=dconv_dec, context=context,
                                   last=index == 0, empty=last_freq),
                )  # fmt: skip
            self.decoder.insert(0, dec if bands is None else MultiWrap(dec, bands))

            chin, chin_z = chout, chout_z
            chout, chout_z = int(config.growth * chout), int(config.growth * chout_z)
            if freq:
                freqs = 1 if freqs <= kernel_size else freqs // stride
            if index == 0 and config.freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, scale=config.emb_scale)
                self.freq_emb_scale = config.freq_emb

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

    def _front_end(
        self, mix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, _Stats]:
        """`mix: [B, C, T]` -> (complex spectrogram z, normalised freq input, time input, stats)."""
        z = spec.hybrid_spec(mix, self.nfft, self.hybrid, self.hybrid_old)
        x = spec.complex_as_channels(z) if self.cac else z.abs()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        if not self.hybrid:
            return z, x, None, _Stats(mean, std, None, None)
        mean_t = mix.mean(dim=(1, 2), keepdim=True)
        std_t = mix.std(dim=(1, 2), keepdim=True)
        xt = (mix - mean_t) / (1e-5 + std_t)
        return z, x, xt, _Stats(mean, std, mean_t, std_t)

    def _time_layers(self, kind: type[_TimeLayer]) -> list[_TimeLayer]:
        """The time branch's encoders or decoders, typed; none without a time branch."""
        if not self.hybrid:
            return []
        layers = self.tencoder if kind is HEncLayer else self.tdecoder
        return [cast(_TimeLayer, layer) for layer in layers]

    def _encode(
        self, x: torch.Tensor, xt: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, _Skips]:
        """Run both encoders; the time branch merges into the freq one at its empty layer."""
        skips = _Skips()
        # The frequency branch runs channels-last: oneDNN's native layout (no reorder
        # around each conv) and DConv's token layout (see `_dconv_over_freqs`).
        x = x.contiguous(memory_format=torch.channels_last)
        tencoders = self._time_layers(HEncLayer)
        for idx, encode in enumerate(self.encoder):
            skips.lengths.append(x.shape[-1])
            inject = None
            if idx < len(tencoders):
                if xt is None:
                    raise ValueError("a hybrid model's encoder needs the time branch's input")
                skips.lengths_t.append(xt.shape[-1])
                tenc = tencoders[idx]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt  # same shape as the freq branch now: merge
                else:
                    skips.time.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                # Frequency embedding: convolutions over frequency are not equivariant.
                bins = torch.arange(x.shape[-2], device=x.device)
                emb = self.freq_emb(bins).t()[None, :, :, None]
                x = x.add_(emb, alpha=self.freq_emb_scale)  # x is this layer's output
            skips.freq.append(x)
        return x, xt, skips

    def _decode(
        self, x: torch.Tensor, xt: torch.Tensor | None, skips: _Skips
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run both decoders; the time branch splits off from the freq one's `pre`."""
        tdecoders = self._time_layers(HDecLayer)
        offset = self.depth - len(tdecoders)
        if x.dim() == 4:  # HDemucs' deepest layers are time convs: 3-D there
            x = x.contiguous(memory_format=torch.channels_last)  # as the encoder's skips
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, skips.freq.pop(), skips.lengths.pop())
            if idx < offset:
                continue
            tdec = tdecoders[idx - offset]
            length_t = skips.lengths_t.pop()
            if tdec.empty:
                xt, _ = tdec(pre[:, :, 0], None, length_t)
            else:
                xt, _ = tdec(xt, skips.time.pop(), length_t)
        return x, xt

    def _back_end(
        self,
        x: torch.Tensor,
        xt: torch.Tensor | None,
        z: torch.Tensor,
        stats: _Stats,
        length: int,
    ) -> torch.Tensor:
        """Denormalise, turn the freq branch into waveforms and add the time branch."""
        # Under bf16 autocast the decoders hand back bf16: one cast each here is cheaper
        # than mixed-dtype arithmetic below (the back end 41 -> 34 ms a segment).
        x = x.to(stats.std.dtype)
        xt = None if xt is None else xt.to(stats.std.dtype)
        batch, _, freqs, frames = x.shape
        num_sources = len(self.sources)
        if self.cac and self.hybrid and not self.hybrid_old:
            zout = spec.padded_cac_spec(x, num_sources, stats.std, stats.mean)
            out = spec.hybrid_ispec(zout, length, padded=True)
        else:
            x = x.reshape(batch, num_sources, -1, freqs, frames)  # channels-last: a copy
            x = x * stats.std[:, None] + stats.mean[:, None]
            if self.cac:
                zout = spec.channels_as_complex(x)
            else:  # plain masking of the mixture's phase (wiener_iters < 0)
                zout = z[:, None] / (1e-8 + z.abs()[:, None]) * x
            out = spec.hybrid_ispec(zout, length, self.hybrid, self.hybrid_old)
        if xt is None or stats.std_t is None or stats.mean_t is None:
            return out
        xt = xt.view(batch, num_sources, -1, length)
        return torch.addcmul(out, xt, stats.std_t[:, None]).add_(stats.mean_t[:, None])
