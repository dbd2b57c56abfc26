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
(`norm_mlp.N.norm.*` = `norm_mlp.N.combined.0.*`, ...). Here each tensor exists once
(`bandit_layers.NormMLP`: both copies must be equal when loading, the alias is added
back when saving), so loading stays strict. Training-only arguments (precisions) are
accepted and ignored. The STFT, RNNs and mask heads are shared with BandIt v1
(`bandit_layers.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models import bandit_layers as layers
from stemsplit.models import msst_config
from stemsplit.models.base import ModelInfo

FAMILY = "bandit_v2"
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


class _Transpose(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.transpose(1, 2)


class BanditV2(nn.Module):
    """`forward(mix [B, C, T]) -> [B, S, C, T]`; every channel separated on its own."""

    def __init__(self, kwargs: Mapping[str, Any], info: ModelInfo, audio_channels: int) -> None:
        super().__init__()
        k = {**_DEFAULTS, **kwargs}
        info.attach(self)
        self.audio_channels = audio_channels
        self.spectral = layers.stft_settings(k)
        window = torch.hann_window(self.spectral.win_length, **(k["wkwargs"] or {}))
        self.stft, self.istft = layers.Spectral(window), layers.Spectral(window.clone())
        specs, weights = layers.musical_bands(self.spectral.n_fft, int(k["fs"]), int(k["n_bands"]))
        self.specs = specs
        emb_dim = int(k["emb_dim"])
        self.band_split = _BandSplit(
            nn.ModuleList(_NormFC(end - start, 1, emb_dim) for start, end in specs)
        )
        seqband: list[nn.Module] = []
        for _ in range(2 * int(k["n_sqm_modules"])):
            seqband += [layers.ResidualRNN(emb_dim, int(k["rnn_dim"]), bool(k["bidirectional"]),
                                           str(k["rnn_type"])), _Transpose()]  # fmt: skip
        self.tf_model = _TFModel(nn.Sequential(*seqband))
        head = layers.mask_head(k, FAMILY, aliases=True)
        self.mask_estim = nn.ModuleDict({
            stem: layers.MaskEstimator(specs, weights, self.spectral.n_fft // 2 + 1, 1, head,
                                       bool(k["use_freq_weights"]))
            for stem in k["stems"]
        })  # fmt: skip

    def valid_length(self, length: int) -> int:
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """`mix: [B, C, T]` -> stems `[B, S, C, T]`."""
        batch, channels, length = mix.shape
        x = self.spectral.analyse(mix.reshape(batch * channels, length), self.stft.window)
        x = x[:, None]  # [BC, 1, F, frames]
        frames = x.shape[-1]
        bands = torch.view_as_real(x.permute(0, 3, 1, 2))  # [BC, frames, 1, F, 2]
        z = torch.stack([
            fc(bands[:, :, :, start:end].reshape(batch * channels, frames, -1))
            for (start, end), fc in zip(self.specs, self.band_split.norm_fc_modules)
        ], dim=1)  # [BC, bands, frames, E]  # fmt: skip
        q = self.tf_model.seqband(z)
        outputs = []
        for estimator in self.mask_estim.values():
            spec = (x * estimator(q).to(x.dtype))[:, 0]
            audio = self.spectral.synthesise(spec, self.istft.window, length)
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
    layers.check_rnn_type(kwargs, FAMILY)
    stems = kwargs.get("stems")
    if not isinstance(stems, (list, tuple)) or not stems:
        raise ModelError(f"{FAMILY} config: kwargs.stems must list the network's stems")
    info = msst_config.model_info(config, len(stems), FAMILY, "kwargs.stems")
    audio = msst_config.section(config, "audio", FAMILY)
    channels = msst_config.positive_int(audio, "num_channels", 2, "audio", FAMILY)
    return BanditV2(kwargs, info, channels).eval()
