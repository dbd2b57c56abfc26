"""BandIt v1 (Watcharasupat, Wu, Chen & Lerch 2023): band-split RNN with one mask per stem.

MSST's `--model_type bandit` (models/bandit/core/model/bsrnn/,
`MultiMaskMultiSourceBandSplitRNNSimple(**config.model)`), the network of the
published BandIt Plus (speech / music / effects on DnR). Each audio channel is
separated as a mono signal:

    mix [B, C, T] -> [B*C, T] -> STFT (torchaudio's, normalised by the window's norm) -> X
    X [B*C, F, frames] -> band split: per band, LayerNorm + Linear over the band's
         (re..., im...) values -> z [B*C, bands, frames, emb]
    z -> 2 * n_sqm_modules residual RNNs, alternating over time and over bands -> q
    per stem: per band, LayerNorm -> Linear -> activation -> Linear -> GLU = the band's
         (complex) mask; "musical" bands overlap and are weighted by float64 bin
         weights (buffers `freq_weights/i`), the vocal layouts tile the spectrum
    stem = ISTFT(X * M) -> [B, S, C, T]

The same blocks as BandIt v2 (`bandit_layers.py`) under MSST's v1 key names: the
network sits under `bsrnn.` (`band_split.norm_fc_modules.N.{norm,fc}`,
`tf_model.seqband.N`, `mask_estim.<stem>.norm_mlp.N`), the windows at `stft.window`
and `istft.window`. Band layouts: `musical` (with `n_bands`; MSST matches the word
anywhere in the name) and the fixed vocal layout `dnr:speech`, `dnr:vox7`,
`musdb:vocals`, `musdb:vox7`; MSST's mel, bark, tribark and erb layouts are refused
by name. Arguments that only training reads (freeze_encoder, normalize_input,
require_no_overlap / require_no_gap checks) are accepted and ignored.

MSST's STFT ignores the config: the wrapper's Lightning base class calls its
`__init__` chain without arguments, so the spectral component always gets its
defaults (n_fft 2048, window 2048, hop 512, Hann, centred, constant padding,
normalised). The config's `n_fft` still sizes the bands and masks, so MSST runs only
configs with n_fft 2048 (others fail on a shape mismatch): those are refused here,
and the other STFT keys (win_length, hop_length, window_fn, wkwargs, power, center,
normalized, pad_mode, onesided) are ignored, as MSST ignores them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import bandit_layers as layers
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo

FAMILY = "bandit"
_REQUIRED = ("in_channel", "stems", "band_specs")
# Training-only, or STFT settings MSST never passes on (see the module docstring).
_IGNORED = {"require_no_overlap", "require_no_gap", "normalize_input", "freeze_encoder",
            "win_length", "hop_length", "window_fn", "wkwargs", "power", "center",
            "normalized", "pad_mode", "onesided"}  # fmt: skip
_DEFAULTS: dict[str, Any] = {
    "fs": 44100, "normalize_channel_independently": False, "treat_channel_as_feature": True,
    "n_sqm_modules": 12, "emb_dim": 128, "rnn_dim": 256, "cond_dim": 0,
    "bidirectional": True, "rnn_type": "LSTM", "mlp_dim": 512, "hidden_activation": "Tanh",
    "hidden_activation_kwargs": None, "complex_mask": True, "n_fft": 2048, "n_bands": None,
    "use_freq_weights": True, "mult_add_mask": False,
}  # fmt: skip
# MSST's _SpectralComponent defaults, the STFT every MSST BandIt v1 runs
_STFT = layers.Stft(n_fft=2048, hop_length=512, win_length=2048, center=True,
                    pad_mode="constant", normalized=True)
VOCAL_LAYOUTS = ("dnr:speech", "dnr:vox7", "musdb:vocals", "musdb:vox7")
# (from Hz, to Hz, band width Hz) of MSST's VocalBandsplitSpecification version 7; one
# more band from 20 kHz to Nyquist.
_VOCAL_RANGES = ((0, 1000, 100), (1000, 4000, 250), (4000, 8000, 500),
                 (8000, 16000, 1000), (16000, 20000, 2000))  # fmt: skip


def vocal_bands(n_fft: int, fs: int) -> list[tuple[int, int]]:
    """The vocal layout's (start, end) bins: fixed widths in Hz, rounded to bins."""

    def index(hz: float) -> int:
        return int(np.round(hz * n_fft / fs))

    specs: list[tuple[int, int]] = []
    for low, high, width in _VOCAL_RANGES:
        lower, end, step = index(low), index(high), index(width)
        if step < 1:
            raise ModelError(f"{FAMILY} config: n_fft {n_fft} at fs {fs} is too coarse for "
                             f"the vocal band layout ({width} Hz bands)")  # fmt: skip
        while lower < end:
            upper = min(lower + step, end)
            specs.append((lower, upper))
            lower = upper
    specs.append((index(20000), n_fft // 2 + 1))
    if any(end <= start for start, end in specs):
        raise ModelError(f"{FAMILY} config: the vocal band layout needs fs above 40 kHz "
                         f"(n_fft {n_fft}, fs {fs} leave an empty band)")  # fmt: skip
    return specs


def band_layout(
    name: str, n_fft: int, fs: int, n_bands: Any
) -> tuple[list[tuple[int, int]], list[np.ndarray] | None]:
    """`band_specs` -> bands and, for overlapping layouts, their bin weights."""
    if name in VOCAL_LAYOUTS:
        return vocal_bands(n_fft, fs), None
    for unsupported in ("tribark", "bark", "erb"):
        if unsupported in name:
            break
    else:
        if "musical" in name:
            if isinstance(n_bands, bool) or not isinstance(n_bands, int) or n_bands < 1:
                raise ModelError(f"{FAMILY} config: musical bands need n_bands, a positive "
                                 f"integer; got {n_bands!r}")  # fmt: skip
            return layers.musical_bands(2 * (n_fft // 2), fs, n_bands)
        if "mel" not in name:
            raise ModelError(f"{FAMILY} config: unknown band_specs {name!r}")
    raise ModelError(f"{FAMILY} config: band_specs {name!r} is not supported; use musical or "
                     f"one of {', '.join(VOCAL_LAYOUTS)}")  # fmt: skip


class _NormFC(nn.Module):
    """One band's embedding: `[N, frames, 2 * bandwidth]` -> `[N, frames, E]`."""

    def __init__(self, bandwidth: int, emb_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2 * bandwidth)
        self.fc = nn.Linear(2 * bandwidth, emb_dim)

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(xb))


class _BandSplit(nn.Module):
    """`x [N, F, frames]` complex -> `z [N, bands, frames, E]`."""

    def __init__(self, specs: list[tuple[int, int]], emb_dim: int) -> None:
        super().__init__()
        self.specs = specs
        self.norm_fc_modules = nn.ModuleList(_NormFC(end - start, emb_dim) for start, end in specs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, frames = x.shape
        # MSST orders a band's features as all real parts, then all imaginary parts
        reim = torch.view_as_real(x).permute(0, 2, 3, 1)  # [N, frames, 2, F]
        return torch.stack([
            fc(reim[..., start:end].reshape(batch, frames, -1))
            for (start, end), fc in zip(self.specs, self.norm_fc_modules)
        ], dim=1)  # fmt: skip


class _SeqBand(nn.Module):
    """Residual RNNs alternating over time and bands: `[N, bands, frames, E]` -> same."""

    def __init__(self, count: int, emb_dim: int, rnn_dim: int, bidirectional: bool,
                 rnn_type: str) -> None:  # fmt: skip
        super().__init__()
        self.seqband = nn.ModuleList(
            layers.ResidualRNN(emb_dim, rnn_dim, bidirectional, rnn_type) for _ in range(count)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for rnn in self.seqband:
            z = rnn(z).transpose(1, 2)
        return z


class _Core(nn.Module):
    """MSST's `bsrnn`: band split, time/band RNNs, one mask estimator per stem."""

    def __init__(self, k: Mapping[str, Any], specs: list[tuple[int, int]],
                 weights: list[np.ndarray] | None, n_freq: int) -> None:  # fmt: skip
        super().__init__()
        emb_dim = int(k["emb_dim"])
        self.band_split = _BandSplit(specs, emb_dim)
        self.tf_model = _SeqBand(2 * int(k["n_sqm_modules"]), emb_dim, int(k["rnn_dim"]),
                                 bool(k["bidirectional"]), str(k["rnn_type"]))  # fmt: skip
        head = layers.mask_head(k, FAMILY)
        self.mask_estim = nn.ModuleDict({
            stem: layers.MaskEstimator(specs, weights, n_freq, 1, head,
                                       bool(k["use_freq_weights"]), register_unused=True)
            for stem in k["stems"]
        })  # fmt: skip


class Bandit(nn.Module):
    """`forward(mix [B, C, T]) -> [B, S, C, T]`; every channel separated on its own."""

    def __init__(self, kwargs: Mapping[str, Any], info: ModelInfo, audio_channels: int) -> None:
        super().__init__()
        k = {**_DEFAULTS, **kwargs}
        info.attach(self)
        self.audio_channels = audio_channels
        self.spectral = _STFT
        window = torch.hann_window(_STFT.win_length)
        self.stft, self.istft = layers.Spectral(window), layers.Spectral(window.clone())
        n_fft = _STFT.n_fft
        specs, weights = band_layout(str(k["band_specs"]), n_fft, int(k["fs"]), k["n_bands"])
        self.bsrnn = _Core(k, specs, weights, n_fft // 2 + 1)

    def valid_length(self, length: int) -> int:
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        batch, channels, length = mix.shape
        x = self.spectral.analyse(mix.reshape(batch * channels, length), self.stft.window)
        q = self.bsrnn.tf_model(self.bsrnn.band_split(x))
        outputs = []
        for estimator in self.bsrnn.mask_estim.values():
            spec = x * estimator(q)[:, 0].to(x.dtype)
            audio = self.spectral.synthesise(spec, self.istft.window, length)
            outputs.append(audio.view(batch, channels, length))
        return torch.stack(outputs, dim=1)


def _check(kwargs: Mapping[str, Any]) -> None:
    """Refuse, by name, what MSST's constructor refuses or what this port leaves out."""
    missing = [key for key in _REQUIRED if key not in kwargs]
    if missing:
        raise ModelError(f"{FAMILY} config: model.{missing[0]} is required")
    unknown = sorted(set(kwargs) - set(_DEFAULTS) - _IGNORED - set(_REQUIRED))
    if unknown:
        raise ModelError(f"{FAMILY} config: unknown model keys {unknown}")
    if kwargs["in_channel"] != 1:
        raise ModelError(f"{FAMILY} config: MSST's BandIt runs mono channels (in_channel 1)")
    if not isinstance(kwargs["band_specs"], str):
        raise ModelError(f"{FAMILY} config: band_specs must name a band layout")
    k = {**_DEFAULTS, **kwargs}
    for key, supported in [("normalize_channel_independently", False), ("cond_dim", 0),
                           ("mult_add_mask", False)]:  # fmt: skip
        if k[key] != supported:
            raise ModelError(f"{FAMILY} config: {key} {k[key]!r} is not supported "
                             f"(only {supported!r})")  # fmt: skip
    if k["n_fft"] != _STFT.n_fft:
        raise ModelError(f"{FAMILY} config: n_fft must be {_STFT.n_fft}: MSST's BandIt always "
                         f"runs a {_STFT.n_fft}-point STFT, whatever the config says")  # fmt: skip
    layers.check_rnn_type(k, FAMILY)
    stems = kwargs["stems"]
    if not isinstance(stems, (list, tuple)) or not stems:
        raise ModelError(f"{FAMILY} config: model.stems must list the network's stems")


def build_bandit(model_type: str, config: Mapping[str, Any]) -> Bandit:
    """BandIt v1 from a parsed MSST yaml (its `model` section: the network's arguments)."""
    kwargs = dict(msst_config.section(config, "model", FAMILY, required=True))
    _check(kwargs)
    info = msst_config.model_info(config, len(kwargs["stems"]), FAMILY, "model.stems")
    audio = msst_config.section(config, "audio", FAMILY)
    channels = msst_config.positive_int(audio, "num_channels", 2, "audio", FAMILY)
    return Bandit(kwargs, info, channels).eval()
