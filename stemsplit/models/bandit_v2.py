"""BandIt v2 (Watcharasupat & Lerch 2024): cinematic audio source separation.

Speech / music / effects from one mixture, as MSST builds it (`--model_type
bandit_v2`, models/bandit_v2/): the yaml's `kwargs` section holds `Bandit(**kwargs)`'s
arguments. Each audio channel is separated as a mono signal:

    mix [B, C, T] -> [B*C, 1, T] -> STFT (normalised by the window's norm) -> X
    X -> band split: per musical band, LayerNorm + Linear over (bins x re/im) -> z
    z [B*C, bands, frames, emb] -> 2 * n_sqm_modules residual RNNs, alternating over
         time and over bands
    per stem: per band, LayerNorm -> Linear -> activation -> Linear -> GLU = complex
         mask of the band's bins, weighted by the band's frequency weights (float64
         buffers `freq_weights/i`) and summed into the overlapping full mask M
    stem = ISTFT(X * M) -> [B, S, C, T]

MSST's mask heads register `norm`, `hidden` and `output` and also a `combined`
Sequential of the same three modules, so its state dicts hold those tensors twice
(`norm_mlp.N.norm.*` = `norm_mlp.N.combined.0.*`, ...). Here each tensor exists once;
`_NormMLP` checks that both copies are equal when loading, drops the alias and adds it
back when saving, so loading stays strict. Training-only arguments (precisions) are
accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo

FAMILY = "bandit_v2"
_ALIASES = (("combined.0.", "norm."), ("combined.1.", "hidden."), ("combined.2.", "output."))
_IGNORED = {"stft_precisions", "bandsplit_precisions", "tf_model_precisions",
            "mask_estim_precisions", "require_no_overlap", "require_no_gap"}  # fmt: skip
_DEFAULTS: dict[str, Any] = {
    "band_type": "musical", "n_bands": 64, "normalize_channel_independently": False,
    "treat_channel_as_feature": True, "n_sqm_modules": 12, "emb_dim": 128, "rnn_dim": 256,
    "bidirectional": True, "rnn_type": "LSTM", "mlp_dim": 512, "hidden_activation": "Tanh",
    "hidden_activation_kwargs": None, "complex_mask": True, "use_freq_weights": True,
    "n_fft": 2048, "win_length": 2048, "hop_length": 512, "window_fn": "hann_window",
    "wkwargs": None, "power": None, "center": True, "normalized": True,
    "pad_mode": "constant", "onesided": True, "fs": 44100,
}  # fmt: skip


def musical_bands(
    n_fft: int, fs: int, n_bands: int
) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """BandIt's musical band layout: (start, end) bins and each band's bin weights.

    Bands equally spaced in MIDI pitch from fs / n_fft to fs / 2, each one octave
    ratio wide, first/last extended to the spectrum's ends; a bin's weights over the
    bands that cover it sum to 1 (float64, as MSST's `musical_filterbank`).
    """
    n_freqs = n_fft // 2 + 1
    df = fs / n_fft
    f_min, f_max = fs / n_fft, fs / 2
    bandwidth_mult = np.power(2.0, np.log2(f_max / f_min) / n_bands)
    low_midi = max(0, 12 * (np.log2(f_min) - np.log2(440.0)) + 69)  # librosa.hz_to_midi
    high_midi = 12 * (np.log2(f_max) - np.log2(440.0)) + 69
    hz = 440.0 * (2.0 ** ((np.linspace(low_midi, high_midi, n_bands) - 69.0) / 12.0))
    low_bins = np.floor(hz / bandwidth_mult / df).astype(int)
    high_bins = np.ceil(hz * bandwidth_mult / df).astype(int)
    bank = np.zeros((n_bands, n_freqs))
    for i in range(n_bands):
        bank[i, low_bins[i] : high_bins[i] + 1] = 1.0
    bank[0, : low_bins[0]] = 1.0
    bank[-1, high_bins[-1] + 1 :] = 1.0
    normalised = bank / bank.sum(axis=0, keepdims=True)
    specs, weights = [], []
    for row, norm_row in zip(bank, normalised):
        active = np.flatnonzero(row)
        if active.size:
            start, end = int(active[0]), int(active[-1]) + 1
            specs.append((start, end))
            weights.append(norm_row[start:end])
    return specs, weights


class _Spectral(nn.Module):
    """Holds the STFT window as torchaudio's (Inverse)Spectrogram does (`window` key)."""

    window: torch.Tensor  # buffer (register_buffer below)

    def __init__(self, window: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("window", window)


class _BandSplit(nn.Module):
    """Container for the per-band embeddings (key `band_split.norm_fc_modules`)."""

    def __init__(self, norm_fc_modules: nn.ModuleList) -> None:
        super().__init__()
        self.norm_fc_modules = norm_fc_modules


class _TFModel(nn.Module):
    """Container for the time/band RNN stack (key `tf_model.seqband`)."""

    def __init__(self, seqband: nn.Sequential) -> None:
        super().__init__()
        self.seqband = seqband


class _NormFC(nn.Module):
    """One band's embedding: LayerNorm + Linear over (channels x bins x re/im)."""

    def __init__(self, bandwidth: int, in_channels: int, emb_dim: int) -> None:
        super().__init__()
        features = in_channels * bandwidth * 2
        self.combined = nn.Sequential(nn.LayerNorm(features), nn.Linear(features, emb_dim))

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        return self.combined(xb)


class _ResidualRNN(nn.Module):
    """`z [B, N, M, E]` -> same: LayerNorm, bidirectional RNN along M, Linear, residual."""

    def __init__(self, emb_dim: int, rnn_dim: int, bidirectional: bool, rnn_type: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(emb_dim)
        self.rnn = getattr(nn, rnn_type)(emb_dim, rnn_dim, num_layers=1, batch_first=True,
                                         bidirectional=bidirectional)  # fmt: skip
        self.fc = nn.Linear(rnn_dim * (2 if bidirectional else 1), emb_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, rows, across, emb = z.shape
        y = self.rnn(self.norm(z).reshape(batch * rows, across, emb))[0]
        return self.fc(y.reshape(batch, rows, across, -1)) + z


class _Transpose(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.transpose(1, 2)


class _NormMLP(nn.Module):
    """One band's mask: `q [B, frames, E]` -> `[B, in_channels, bandwidth, frames]`."""

    def __init__(self, emb_dim: int, mlp_dim: int, bandwidth: int, in_channels: int,
                 activation: nn.Module, complex_mask: bool) -> None:  # fmt: skip
        super().__init__()
        self.bandwidth, self.in_channels, self.complex_mask = bandwidth, in_channels, complex_mask
        reim = 2 if complex_mask else 1
        self.norm = nn.LayerNorm(emb_dim)
        self.hidden = nn.Sequential(nn.Linear(emb_dim, mlp_dim), activation)
        self.output = nn.Sequential(nn.Linear(mlp_dim, bandwidth * in_channels * reim * 2),
                                    nn.GLU(dim=-1))  # fmt: skip
        self._register_load_state_dict_pre_hook(self._drop_aliases)
        self._register_state_dict_hook(_add_aliases)

    @staticmethod
    def _drop_aliases(state: dict, prefix: str, *_: Any) -> None:
        """MSST's `combined.K.*` copies: must equal `norm/hidden/output.*`; then dropped."""
        for alias, name in _ALIASES:
            for key in [k for k in state if k.startswith(prefix + alias)]:
                canonical = prefix + name + key[len(prefix + alias) :]
                value = state.pop(key)
                if canonical not in state:
                    state[canonical] = value
                elif not torch.equal(state[canonical], value):
                    raise RuntimeError(f"{key} differs from {canonical}; they are one tensor")

    def forward(self, qb: torch.Tensor) -> torch.Tensor:
        mb = self.output(self.hidden(self.norm(qb)))
        batch, frames, _ = mb.shape
        if self.complex_mask:
            mb = torch.view_as_complex(
                mb.reshape(batch, frames, self.in_channels, self.bandwidth, 2).contiguous()
            )
        else:
            mb = mb.reshape(batch, frames, self.in_channels, self.bandwidth)
        return mb.permute(0, 2, 3, 1)


def _add_aliases(module: nn.Module, state: dict, prefix: str, *_: Any) -> None:
    """Write MSST's duplicate `combined.K.*` keys too (a state dict MSST can load)."""
    for alias, name in _ALIASES:
        for key in [k for k in state if k.startswith(prefix + name)]:
            state[prefix + alias + key[len(prefix + name) :]] = state[key]


class _MaskEstimator(nn.Module):
    """One stem's complex mask `[B, in_channels, bins, frames]` from `q [B, bands, frames, E]`."""

    def __init__(self, specs: list[tuple[int, int]], weights: list[np.ndarray], n_freq: int,
                 emb_dim: int, mlp_dim: int, in_channels: int, activation: type[nn.Module],
                 activation_kwargs: Mapping[str, Any], complex_mask: bool,
                 use_freq_weights: bool) -> None:  # fmt: skip
        super().__init__()
        self.specs, self.n_freq, self.in_channels = specs, n_freq, in_channels
        self.norm_mlp = nn.ModuleList(
            _NormMLP(emb_dim, mlp_dim, end - start, in_channels,
                     activation(**activation_kwargs), complex_mask)
            for start, end in specs
        )  # fmt: skip
        self.use_freq_weights = use_freq_weights
        if use_freq_weights:
            for index, weight in enumerate(weights):
                self.register_buffer(f"freq_weights/{index}", torch.from_numpy(weight.copy()))

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        batch, _, frames, _ = q.shape
        masks = torch.zeros(batch, self.in_channels, self.n_freq, frames,
                            device=q.device, dtype=torch.complex64)  # fmt: skip
        for index, ((start, end), mlp) in enumerate(zip(self.specs, self.norm_mlp)):
            mask = mlp(q[:, index])
            if self.use_freq_weights:  # float64 weights: the product is complex128, as MSST's
                mask = mask * self.get_buffer(f"freq_weights/{index}")[:, None]
            masks[:, :, start:end, :] += mask
        return masks


class BanditV2(nn.Module):
    """`forward(mix [B, C, T]) -> [B, S, C, T]`; every channel separated on its own."""

    def __init__(self, kwargs: Mapping[str, Any], info: ModelInfo, audio_channels: int) -> None:
        super().__init__()
        k = {**_DEFAULTS, **kwargs}
        info.attach(self)
        self.audio_channels = audio_channels
        self.n_fft, self.hop_length = int(k["n_fft"]), int(k["hop_length"])
        self.win_length = int(k["win_length"] or self.n_fft)
        self.center, self.pad_mode, self.normalized = (
            bool(k["center"]),
            k["pad_mode"],
            k["normalized"],
        )
        window = torch.hann_window(self.win_length, **(k["wkwargs"] or {}))
        self.stft, self.istft = _Spectral(window), _Spectral(window.clone())
        specs, weights = musical_bands(self.n_fft, int(k["fs"]), int(k["n_bands"]))
        self.specs = specs
        emb_dim = int(k["emb_dim"])
        self.band_split = _BandSplit(
            nn.ModuleList(_NormFC(end - start, 1, emb_dim) for start, end in specs)
        )
        layers: list[nn.Module] = []
        for _ in range(2 * int(k["n_sqm_modules"])):
            layers += [_ResidualRNN(emb_dim, int(k["rnn_dim"]), bool(k["bidirectional"]),
                                    str(k["rnn_type"])), _Transpose()]  # fmt: skip
        self.tf_model = _TFModel(nn.Sequential(*layers))
        activation = getattr(nn, str(k["hidden_activation"]))
        self.mask_estim = nn.ModuleDict({
            stem: _MaskEstimator(specs, weights, self.n_fft // 2 + 1, emb_dim, int(k["mlp_dim"]),
                                 1, activation, k["hidden_activation_kwargs"] or {},
                                 bool(k["complex_mask"]), bool(k["use_freq_weights"]))
            for stem in k["stems"]
        })  # fmt: skip

    def valid_length(self, length: int) -> int:
        return length

    def _window_norm(self, window: torch.Tensor) -> torch.Tensor:
        return window.pow(2.0).sum().sqrt() if self.normalized else window.new_tensor(1.0)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        batch, channels, length = mix.shape
        mono = mix.reshape(batch * channels, length)
        window = self.stft.window
        x = torch.stft(
            mono,
            self.n_fft,
            self.hop_length,
            self.win_length,
            window,
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        )
        x = (x / self._window_norm(window))[:, None]  # [BC, 1, F, frames]  # fmt: skip
        frames = x.shape[-1]
        bands = torch.view_as_real(x.permute(0, 3, 1, 2))  # [BC, frames, 1, F, 2]
        z = torch.stack([
            fc(bands[:, :, :, start:end].reshape(batch * channels, frames, -1))
            for (start, end), fc in zip(self.specs, self.band_split.norm_fc_modules)
        ], dim=1)  # [BC, bands, frames, E]  # fmt: skip
        q = self.tf_model.seqband(z)
        iwindow = self.istft.window
        outputs = []
        for estimator in self.mask_estim.values():
            spec = (x * estimator(q).to(x.dtype))[:, 0] * self._window_norm(iwindow)
            audio = torch.istft(spec, self.n_fft, self.hop_length, self.win_length, iwindow,
                                center=self.center, length=length)  # fmt: skip
            outputs.append(audio.view(batch, channels, length))
        return torch.stack(outputs, dim=1)


def build_bandit_v2(model_type: str, config: Mapping[str, Any]) -> BanditV2:
    """BandIt v2 from a parsed MSST yaml (`cls: Bandit`, arguments under `kwargs`)."""
    kwargs = dict(msst_config.section(config, "kwargs", FAMILY, required=True))
    unknown = sorted(set(kwargs) - set(_DEFAULTS) - _IGNORED - {"in_channels", "stems"})
    if unknown:
        raise ModelError(f"{FAMILY} config: unknown kwargs {unknown}")
    if kwargs.get("in_channels", 1) != 1 or not kwargs.get("treat_channel_as_feature", True):
        raise ModelError(f"{FAMILY} config: MSST's BandIt v2 runs mono channels (in_channels 1)")
    if (
        kwargs.get("normalize_channel_independently")
        or kwargs.get("band_type", "musical") != "musical"
    ):
        raise ModelError(f"{FAMILY} config: only musical bands, no per-channel normalisation")
    if kwargs.get("power") is not None or kwargs.get("window_fn", "hann_window") != "hann_window":
        raise ModelError(f"{FAMILY} config: only complex (power null) hann-window STFTs")
    activation = getattr(nn, str(kwargs.get("hidden_activation", "Tanh")), None)
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise ModelError(f"{FAMILY} config: unknown hidden_activation")
    if str(kwargs.get("rnn_type", "LSTM")) not in ("LSTM", "GRU", "RNN"):
        raise ModelError(f"{FAMILY} config: rnn_type must be LSTM, GRU or RNN")
    stems = kwargs.get("stems")
    if not isinstance(stems, (list, tuple)) or not stems:
        raise ModelError(f"{FAMILY} config: kwargs.stems must list the network's stems")
    info = msst_config.model_info(config, len(stems), FAMILY, "kwargs.stems")
    audio = msst_config.section(config, "audio", FAMILY)
    channels = msst_config.positive_int(audio, "num_channels", 2, "audio", FAMILY)
    return BanditV2(kwargs, info, channels).eval()
