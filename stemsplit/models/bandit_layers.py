"""The parts BandIt v1 (`bandit.py`) and BandIt v2 (`bandit_v2.py`) share.

Both separate each audio channel as a mono signal with torchaudio's (Inverse)
Spectrogram (`normalized=True`: divided, then multiplied, by the window's L2 norm),
embed each frequency band, run residual RNNs alternately over time and bands, and
estimate one complex mask per stem from per-band MLPs whose masks overlap where
the musical bands do (weighted by float64 per-bin weights that sum to 1).

Tensors: `x` complex spectrogram `[N, F, frames]` (N = batch x channels), `q`
embeddings `[N, bands, frames, E]`, masks `[N, 1, F, frames]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.ops import LSTM

_ALIASES = (("combined.0.", "norm."), ("combined.1.", "hidden."), ("combined.2.", "output."))


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


class Spectral(nn.Module):
    """Holds the STFT window as torchaudio's (Inverse)Spectrogram does (`window` key)."""

    window: torch.Tensor  # buffer (register_buffer below)

    def __init__(self, window: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("window", window)


@dataclass(frozen=True)
class Stft:
    """torchaudio's `spectrogram(power=None)` / `inverse_spectrogram`, onesided, pad 0."""

    n_fft: int
    hop_length: int
    win_length: int
    center: bool
    pad_mode: str
    normalized: bool

    def _norm(self, window: torch.Tensor) -> torch.Tensor:
        return window.pow(2.0).sum().sqrt() if self.normalized else window.new_tensor(1.0)

    def analyse(self, signal: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """`signal [N, T]` -> complex `[N, F, frames]`."""
        x = torch.stft(signal, self.n_fft, self.hop_length, self.win_length, window,
                       center=self.center, pad_mode=self.pad_mode, return_complex=True)  # fmt: skip
        return x / self._norm(window)

    def synthesise(self, spec: torch.Tensor, window: torch.Tensor, length: int) -> torch.Tensor:
        """Complex `[N, F, frames]` -> `[N, length]`."""
        spec = spec * self._norm(window)
        return torch.istft(spec, self.n_fft, self.hop_length, self.win_length, window,
                           center=self.center, length=length)  # fmt: skip


def stft_settings(k: Mapping[str, Any]) -> Stft:
    """The STFT of MSST's BandIt arguments (torchaudio's defaults for null lengths)."""
    n_fft = int(k["n_fft"])
    win_length = int(k["win_length"] or n_fft)
    hop_length = int(k["hop_length"] or win_length // 2)
    return Stft(n_fft, hop_length, win_length, bool(k["center"]), str(k["pad_mode"]),
                bool(k["normalized"]))  # fmt: skip


def check_rnn_type(kwargs: Mapping[str, Any], family: str) -> None:
    if str(kwargs.get("rnn_type", "LSTM")) not in ("LSTM", "GRU", "RNN"):
        raise ModelError(f"{family} config: rnn_type must be LSTM, GRU or RNN")


class ResidualRNN(nn.Module):
    """`z [B, N, M, E]` -> same: LayerNorm, bidirectional RNN along M, Linear, residual."""

    def __init__(self, emb_dim: int, rnn_dim: int, bidirectional: bool, rnn_type: str) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(emb_dim)
        rnn = {"LSTM": LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[rnn_type]
        self.rnn = rnn(emb_dim, rnn_dim, num_layers=1, batch_first=True,
                       bidirectional=bidirectional)
        self.fc = nn.Linear(rnn_dim * (2 if bidirectional else 1), emb_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch, rows, across, emb = z.shape
        y = self.rnn(self.norm(z).reshape(batch * rows, across, emb))[0]
        return self.fc(y.reshape(batch, rows, across, -1)) + z


class NormMLP(nn.Module):
    """One band's mask: `q [B, frames, E]` -> `[B, in_channels, bandwidth, frames]`.

    With `aliases` (BandIt v2), MSST's state dicts also hold `norm`, `hidden` and
    `output` as `combined.0/1/2` (one Sequential of the same modules): here each tensor
    exists once; loading checks that both copies are equal and drops the alias, saving
    adds it back, so loading stays strict.
    """

    def __init__(self, emb_dim: int, mlp_dim: int, bandwidth: int, in_channels: int,
                 activation: nn.Module, complex_mask: bool, aliases: bool) -> None:  # fmt: skip
        super().__init__()
        self.bandwidth, self.in_channels, self.complex_mask = bandwidth, in_channels, complex_mask
        reim = 2 if complex_mask else 1
        self.norm = nn.LayerNorm(emb_dim)
        self.hidden = nn.Sequential(nn.Linear(emb_dim, mlp_dim), activation)
        self.output = nn.Sequential(nn.Linear(mlp_dim, bandwidth * in_channels * reim * 2),
                                    nn.GLU(dim=-1))  # fmt: skip
        if aliases:
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


@dataclass(frozen=True)
class MaskHead:
    """What every stem's mask estimator is built from (besides the band layout)."""

    emb_dim: int
    mlp_dim: int
    activation: type[nn.Module]
    activation_kwargs: Mapping[str, Any]
    complex_mask: bool
    aliases: bool = False  # BandIt v2's duplicate `combined.K` keys


def mask_head(k: Mapping[str, Any], family: str, aliases: bool = False) -> MaskHead:
    """The mask heads' settings; `hidden_activation` names a `torch.nn` activation."""
    activation = vars(nn.modules.activation).get(str(k["hidden_activation"]))
    if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
        raise ModelError(f"{family} config: unknown hidden_activation {k['hidden_activation']!r}")
    return MaskHead(int(k["emb_dim"]), int(k["mlp_dim"]), activation,
                    k["hidden_activation_kwargs"] or {}, bool(k["complex_mask"]), aliases)  # fmt: skip


class MaskEstimator(nn.Module):
    """One stem's mask `[B, in_channels, bins, frames]` from `q [B, bands, frames, E]`.

    Band masks are added into the full mask, each weighted by its float64 bin weights
    (buffers `freq_weights/i`) when `use_freq_weights`; `weights` None: no buffers (the
    bands then tile the spectrum). `register_unused` keeps the buffers even when they
    are not applied (BandIt v1 registers them whenever its bands have weights).
    """

    def __init__(self, specs: list[tuple[int, int]], weights: list[np.ndarray] | None,
                 n_freq: int, in_channels: int, head: MaskHead, use_freq_weights: bool,
                 register_unused: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.specs, self.n_freq, self.in_channels = specs, n_freq, in_channels
        self.norm_mlp = nn.ModuleList(
            NormMLP(head.emb_dim, head.mlp_dim, end - start, in_channels,
                    head.activation(**head.activation_kwargs), head.complex_mask, head.aliases)
            for start, end in specs
        )  # fmt: skip
        self.use_freq_weights = use_freq_weights and weights is not None
        if weights is not None and (use_freq_weights or register_unused):
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
