"""UVR's VR Architecture models, separated exactly as audio-separator 0.47.1's VRSeparator.

Per track (read at 44.1 kHz, as audio-separator reads files): the multi-band
spectrogram of the modelparams (vr_spec; the top band resampled from 44.1 kHz with
its `res_type`), its magnitude zero-padded by the network's `offset` and to whole
`roi = window_size - 2 * offset` frames, divided by its global maximum, cut into
`window_size`-frame patches every `roi` frames, masked by the network in batches; with
`enable_tta` a second pass shifted by `roi // 2` is averaged in. The mask is raised to
the aggression's power (`1 + aggr / 3` below the first band's crop_stop, `1 + aggr`
above; inverted for non-accompaniment primaries), optionally post-processed
(merge_artifacts), applied to the mixture's magnitude with its phase (primary: `mask`,
secondary: `1 - mask`), and inverted band by band; `high_end_process` mirrors the
network's top bins into the input's cut-off high end. Models whose modelparams run at
another rate are resampled back to 44.1 kHz (librosa's default, soxr_hq). Each stem is
then peak-normalised as audio-separator writes it (`normalization_threshold`,
`amplification_threshold`).

`forward` takes whole tracks and returns [B, 2, C, T] (primary, secondary), padded
with zeros where the inverse STFT is shorter than the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.uvr import vr_spec
from stemsplit.models.uvr.common import (
    NON_ACCOMPANIMENT,
    SAMPLERATE,
    normalize_stems,
    stem_name,
    stem_pair,
    whole_track_recipe,
)
from stemsplit.models.uvr.vr_nets import VRNetwork, network_from_state

_VR_PARAMS = ("batch_size", "window_size", "aggression", "enable_tta", "enable_post_process",
              "post_process_threshold", "high_end_process")  # fmt: skip


@dataclass(frozen=True)
class VRSettings:
    """audio-separator's `vr_params` and its output peak thresholds (its defaults)."""

    batch_size: int = 1
    window_size: int = 512
    aggression: int = 5
    enable_tta: bool = False
    enable_post_process: bool = False
    post_process_threshold: float = 0.2
    high_end_process: bool = False
    normalization_threshold: float = 0.9
    amplification_threshold: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> VRSettings:
        given = dict(params.get("vr_params") or {})
        unknown = set(given) - set(_VR_PARAMS)
        if unknown:
            raise ModelError(f"unknown vr_params: {', '.join(sorted(unknown))}")
        for key in ("normalization_threshold", "amplification_threshold"):
            if key in params:
                given[key] = params[key]
        base = cls()
        return replace(base, **{k: type(getattr(base, k))(v) for k, v in given.items()})


def merge_artifacts(mask: np.ndarray, thres: float = 0.01, min_range: int = 64,
                    fade_size: int = 32) -> np.ndarray:
    """audio-separator's spec_utils.merge_artifacts (in place; unchanged on failure)."""
    try:
        idx = np.where(mask.min(axis=(0, 1)) > thres)[0]
        start_idx = np.insert(idx[np.where(np.diff(idx) != 1)[0] + 1], 0, idx[0])
        end_idx = np.append(idx[np.where(np.diff(idx) != 1)[0]], idx[-1])
        artifact_idx = np.where(end_idx - start_idx > min_range)[0]
        weight = np.zeros_like(mask)
        if len(artifact_idx) > 0:
            old_e = None
            for s, e in zip(start_idx[artifact_idx], end_idx[artifact_idx]):
                if old_e is not None and s - old_e < fade_size:
                    s = old_e - fade_size * 2
                if s != 0:
                    weight[:, :, s : s + fade_size] = np.linspace(0, 1, fade_size)
                else:
                    s -= fade_size
                if e != mask.shape[2]:
                    weight[:, :, e - fade_size : e] = np.linspace(1, 0, fade_size)
                else:
                    e += fade_size
                weight[:, :, s + fade_size : e - fade_size] = 1
                old_e = e
        mask += weight * (1 - mask)
    except (IndexError, ValueError):  # audio-separator prints and keeps the mask
        pass
    return mask


class VRNet(nn.Module):
    """A UVR VR Architecture `.pth` behind the stemsplit model protocol."""

    def __init__(self, network: VRNetwork, modelparams: Mapping[str, Any], settings: VRSettings,
                 primary: str = "Vocals", secondary: str = "Instrumental", v51: bool = False) -> None:
        super().__init__()
        self.network = network.eval()
        self.mp = vr_spec.parse_modelparams(modelparams)
        self.settings = settings
        # what the config says; each run's flags apply over it, not over the last run's
        self.config_settings = settings
        self.v51 = v51
        self.uvr_stems = (primary, secondary)
        self.sources = [stem_name(primary), stem_name(secondary)]
        self.samplerate = SAMPLERATE
        self.audio_channels = 2
        self.residual: str | None = None
        self.recipe = whole_track_recipe(self.samplerate)

    def apply_engine_settings(self, overlap: float | None = None, batch_size: int | None = None,
                              tta: bool | None = None) -> None:
        """--batch-size sets vr_params batch_size, --tta turns enable_tta on (overlap: none);
        the engine hands them over once (`models.base.SelfChunking`).

        `tta=False` is the flag's default, not a request: the config's enable_tta stays.
        """
        changes: dict[str, Any] = {}
        if batch_size is not None:
            changes["batch_size"] = int(batch_size)
        if tta:
            changes["enable_tta"] = True
        self.settings = replace(self.config_settings, **changes)

    def valid_length(self, length: int) -> int:
        return length

    def _spectrogram(self, mix: np.ndarray) -> tuple[np.ndarray, int | None, np.ndarray | None]:
        mp = self.mp
        bands = len(mp["band"])
        waves: dict[int, np.ndarray] = {}
        specs: dict[int, np.ndarray] = {}
        high_h, high = None, None
        for d in range(bands, 0, -1):
            bp = mp["band"][d]
            if d == bands:
                waves[d] = vr_spec.resample(mix, SAMPLERATE, bp["sr"], bp["res_type"])
            else:
                waves[d] = vr_spec.resample(waves[d + 1], mp["band"][d + 1]["sr"], bp["sr"],
                                            bp["res_type"])  # fmt: skip
            specs[d] = vr_spec.wave_to_spectrogram(waves[d], bp["hl"], bp["n_fft"], mp, d, self.v51)
            if d == bands and self.settings.high_end_process:
                high_h = (bp["n_fft"] // 2 - bp["crop_stop"]) + (
                    mp["pre_filter_stop"] - mp["pre_filter_start"])
                high = specs[d][:, bp["n_fft"] // 2 - high_h : bp["n_fft"] // 2, :]
        return vr_spec.combine(specs, mp, self.v51), high_h, high

    def _masks(self, mag_pad: np.ndarray, roi: int, device: torch.device) -> np.ndarray:
        offset = self.network.offset
        window = self.settings.window_size
        patches = (mag_pad.shape[2] - 2 * offset) // roi
        dataset = np.asarray([mag_pad[:, :, i * roi : i * roi + window] for i in range(patches)])
        masks = []
        step = max(1, self.settings.batch_size)
        with torch.autocast(device_type=device.type, enabled=False), torch.inference_mode():
            for i in range(0, patches, step):
                batch = torch.from_numpy(dataset[i : i + step]).to(device)
                pred = self.network.predict_mask(batch)
                if not pred.shape[3] > 0:
                    raise ModelError("window_size too small for this VR network")
                masks.append(np.concatenate(pred.float().cpu().numpy(), axis=2))
        if not masks:
            raise ModelError("window_size too small for this VR network")
        return np.concatenate(masks, axis=2)

    def _mask(self, mag: np.ndarray, device: torch.device) -> np.ndarray:
        offset = self.network.offset
        window = self.settings.window_size
        frames = mag.shape[2]
        roi = window - offset * 2
        if roi <= 0:
            raise ModelError(f"window_size must exceed {2 * offset} for this VR network")
        pad_l, pad_r = offset, roi - frames % roi + offset
        mag_pad = np.pad(mag, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
        mag_pad /= mag_pad.max()
        mask = self._masks(mag_pad, roi, device)
        if self.settings.enable_tta:
            pad_l += roi // 2
            pad_r += roi // 2
            mag_pad = np.pad(mag, ((0, 0), (0, 0), (pad_l, pad_r)), mode="constant")
            mag_pad /= mag_pad.max()
            mask_tta = self._masks(mag_pad, roi, device)[:, :, roi // 2 :]
            return (mask[:, :, :frames] + mask_tta[:, :, :frames]) * 0.5
        return mask[:, :, :frames]

    def _aggression(self, mask: np.ndarray) -> np.ndarray:
        aggr = float(int(self.settings.aggression) / 100) * 2
        if aggr == 0:
            return mask
        if self.uvr_stems[0] in NON_ACCOMPANIMENT:
            aggr = 1 - aggr
        pair = [aggr, aggr]
        correction = self.mp.get("aggr_correction")
        if correction is not None:
            pair[0] += correction["left"]
            pair[1] += correction["right"]
        split = self.mp["band"][1]["crop_stop"]
        for ch in range(2):
            mask[ch, :split] = np.power(mask[ch, :split], 1 + pair[ch] / 3)
            mask[ch, split:] = np.power(mask[ch, split:], 1 + pair[ch])
        return mask

    def separate_track(self, mix: np.ndarray, device: torch.device) -> np.ndarray:
        """[2, T] float32 -> [2 stems, 2, T] float32."""
        spec, high_h, high = self._spectrogram(np.ascontiguousarray(mix, dtype=np.float32))
        mag, phase = np.abs(spec), np.angle(spec)
        mask = self._aggression(self._mask(mag, device))
        if self.settings.enable_post_process:
            mask = merge_artifacts(mask, thres=self.settings.post_process_threshold)
        y_spec = mask * mag * np.exp(1.0j * phase)
        v_spec = (1 - mask) * mag * np.exp(1.0j * phase)
        length = mix.shape[-1]
        out = np.zeros((2, 2, length), dtype=np.float32)
        for index, part in enumerate((y_spec, v_spec)):
            part = np.nan_to_num(part, nan=0.0, posinf=0.0, neginf=0.0)
            if self.settings.high_end_process and high is not None and high_h:
                mirrored = vr_spec.mirroring(part, high, self.mp)
                wave = vr_spec.to_wave(part, self.mp, self.v51, high_h, mirrored)
            else:
                wave = vr_spec.to_wave(part, self.mp, self.v51)
            if self.mp["sr"] != SAMPLERATE:
                wave = vr_spec.resample(wave, self.mp["sr"], SAMPLERATE, "soxr_hq")
            n = min(length, wave.shape[-1])
            out[index, :, :n] = wave[:, :n]
        return normalize_stems(out, self.settings.normalization_threshold,
                               self.settings.amplification_threshold)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.shape[1] == 1:
            mix = mix.expand(-1, 2, -1)
        if mix.shape[1] != 2:
            raise ModelError(f"VR models take stereo audio, got {mix.shape[1]} channels")
        outs = [torch.from_numpy(self.separate_track(item.float().cpu().numpy(), mix.device))
                for item in mix]  # fmt: skip
        return torch.stack(outs).to(mix.device)


def build_vr(state: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> VRNet:
    """The `vr` factory: a VR state dict and its model data, whose `vr_model_param` has
    been replaced by the parsed modelparams JSON under `modelparams`."""
    if "modelparams" not in params:
        raise ModelError("VR model data needs its modelparams (vr_model_param)")
    mp = vr_spec.parse_modelparams(params["modelparams"])
    nout, nout_lstm = params.get("nout"), params.get("nout_lstm")
    network = network_from_state(state, mp["bins"], nout, nout_lstm)
    try:
        network.load_state_dict(dict(state), strict=True)
    except RuntimeError as err:
        text = " ".join(str(err).split())[:300]
        raise ModelError(f"the VR weights do not fit their modelparams ({text})") from err
    from stemsplit.models.uvr.vr_nets import CascadedNet

    v51 = isinstance(network, CascadedNet)
    primary, secondary = stem_pair(params)
    return VRNet(network, mp, VRSettings.from_params(params), primary, secondary, v51)
