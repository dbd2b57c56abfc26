"""The VR Architecture's multi-band spectrograms, as audio-separator 0.47.1 computes them.

A modelparams JSON splits the spectrum into bands, each an STFT (librosa's: Hann,
centred, zero-padded) of the track resampled to the band's rate; `combine` crops and
stacks the bands' bins into one spectrogram of `bins + 1` rows; `to_wave` inverts it
band by band (with the low/high-pass ramps) and sums them, resampling each partial
sum up to the next band's rate. Resamplers are librosa's: `polyphase`
(scipy.signal.resample_poly) between bands when building, and `sinc_fastest`
(libsamplerate) when merging, as on Linux (macOS on ARM uses polyphase).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from stemsplit.errors import ModelError

MERGE_RESAMPLER = "sinc_fastest"


def parse_modelparams(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A modelparams JSON as audio-separator's ModelParameters holds it (int band keys)."""
    param: dict[str, Any] = {"bins": -1, "unstable_bins": -1, "stable_bins": -1, "sr": 44100,
                             "pre_filter_start": -1, "pre_filter_stop": -1, "band": {}}  # fmt: skip
    param.update(raw)
    param["band"] = {int(k): dict(v) for k, v in dict(raw.get("band", {})).items()}
    for key in ("mid_side", "mid_side_b", "mid_side_b2", "stereo_w", "stereo_n", "reverse"):
        param.setdefault(key, False)
    if "n_bins" in param:
        param["bins"] = param["n_bins"]
    if not param["band"] or param["bins"] <= 0:
        raise ModelError("VR modelparams need 'bins' and at least one 'band'")
    return param


def resample(y: np.ndarray, orig_sr: int, target_sr: int, res_type: str) -> np.ndarray:
    """librosa.resample(y, orig_sr, target_sr, res_type) on [channels, n] (fix=True)."""
    if orig_sr == target_sr:
        return y
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(y.shape[-1] * ratio))
    try:
        if res_type == "polyphase":
            from scipy.signal import resample_poly

            gcd = math.gcd(int(orig_sr), int(target_sr))
            y_hat = resample_poly(y, int(target_sr) // gcd, int(orig_sr) // gcd, axis=-1)
        elif res_type in ("linear", "zero_order_hold", "sinc_best", "sinc_fastest", "sinc_medium"):
            import samplerate

            y_hat = np.apply_along_axis(samplerate.resample, -1, y, ratio=ratio,
                                        converter_type=res_type)  # fmt: skip
        elif res_type.startswith("soxr"):
            import soxr

            y_hat = np.apply_along_axis(soxr.resample, -1, y, in_rate=orig_sr,
                                        out_rate=target_sr, quality=res_type)  # fmt: skip
        else:
            import resampy

            y_hat = resampy.resample(y, orig_sr, target_sr, filter=res_type, axis=-1)
    except ImportError as err:
        raise ModelError(
            f"VR models resample with {res_type!r}, which needs {err.name}: "
            "pip install 'stemsplit-cli[vr]'"
        ) from err
    if y_hat.shape[-1] > n_samples:
        y_hat = y_hat[..., :n_samples]
    elif y_hat.shape[-1] < n_samples:
        y_hat = np.pad(y_hat, [(0, 0)] * (y_hat.ndim - 1) + [(0, n_samples - y_hat.shape[-1])])
    return np.asarray(y_hat, dtype=y.dtype)


def _hann(n_fft: int) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic, float64


def stft(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa.stft(wave, n_fft, hop): centred, zero-padded, complex64 [bins, frames]."""
    padded = np.pad(wave, (n_fft // 2, n_fft // 2))
    frames = 1 + (padded.shape[-1] - n_fft) // hop
    index = np.arange(n_fft)[:, None] + hop * np.arange(frames)[None, :]
    spec = np.fft.rfft(_hann(n_fft)[:, None] * padded[index], axis=0)
    return spec.astype(np.complex64)


def istft(spec: np.ndarray, hop: int) -> np.ndarray:
    """librosa.istft(spec, hop_length=hop): centred, length hop * (frames - 1)."""
    n_fft = 2 * (spec.shape[0] - 1)
    frames = spec.shape[1]
    window = _hann(n_fft)
    real = np.float32 if spec.dtype == np.complex64 else np.float64
    full = n_fft + hop * (frames - 1)
    y = np.zeros(full, dtype=real)
    parts = window[:, None] * np.fft.irfft(spec, n=n_fft, axis=0)
    for i in range(frames):
        y[i * hop : i * hop + n_fft] += parts[:, i]
    norm = np.zeros(full, dtype=real)
    square = window**2
    for i in range(frames):
        norm[i * hop : i * hop + n_fft] += square
    start = n_fft // 2
    y = y[start : full - start]
    norm = norm[start : full - start]
    nonzero = norm > np.finfo(real).tiny
    y[nonzero] /= norm[nonzero]
    return y


def wave_to_spectrogram(wave: np.ndarray, hop: int, n_fft: int, mp: Mapping[str, Any],
                        band: int, v51: bool) -> np.ndarray:
    left, right = wave[0], wave[1]
    if not v51:
        if mp["reverse"]:
            left, right = np.flip(left), np.flip(right)
        elif mp["mid_side"]:
            left, right = np.add(left, right) / 2, np.subtract(left, right)
        elif mp["mid_side_b2"]:
            left, right = np.add(right, left * 0.5), np.subtract(left, right * 0.5)
    spec = np.asarray([stft(np.ascontiguousarray(left), n_fft, hop),
                       stft(np.ascontiguousarray(right), n_fft, hop)])  # fmt: skip
    if v51:
        convert = mp["band"][band].get("convert_channels")
        if convert == "mid_side_c":
            spec = np.asarray([np.add(spec[0], spec[1] * 0.25), np.subtract(spec[1], spec[0] * 0.25)])
        elif convert == "mid_side":
            spec = np.asarray([np.add(spec[0], spec[1]) / 2, np.subtract(spec[0], spec[1])])
        elif convert == "stereo_n":
            spec = np.asarray([np.add(spec[0], spec[1] * 0.25) / 0.9375,
                               np.add(spec[1], spec[0] * 0.25) / 0.9375])  # fmt: skip
    return spec


def spectrogram_to_wave(spec: np.ndarray, hop: int, mp: Mapping[str, Any], band: int,
                        v51: bool) -> np.ndarray:
    left, right = istft(spec[0], hop), istft(spec[1], hop)
    if v51:
        convert = mp["band"][band].get("convert_channels")
        if convert == "mid_side_c":
            return np.asarray([np.subtract(left / 1.0625, right / 4.25),
                               np.add(right / 1.0625, left / 4.25)])  # fmt: skip
        if convert == "mid_side":
            return np.asarray([np.add(left, right / 2), np.subtract(left, right / 2)])
        if convert == "stereo_n":
            return np.asarray([np.subtract(left, right * 0.25), np.subtract(right, left * 0.25)])
    else:
        if mp["reverse"]:
            return np.asarray([np.flip(left), np.flip(right)])
        if mp["mid_side"]:
            return np.asarray([np.add(left, right / 2), np.subtract(left, right / 2)])
        if mp["mid_side_b2"]:
            return np.asarray([np.add(right / 1.25, 0.4 * left), np.subtract(left / 1.25, 0.4 * right)])
    return np.asarray([left, right])


def lp_mask(n_bins: int, start: int, stop: int) -> np.ndarray:
    return np.concatenate([np.ones((start - 1, 1)), np.linspace(1, 0, stop - start + 1)[:, None],
                           np.zeros((n_bins - stop, 1))], axis=0)  # fmt: skip


def hp_mask(n_bins: int, start: int, stop: int) -> np.ndarray:
    return np.concatenate([np.zeros((stop + 1, 1)), np.linspace(0, 1, 1 + start - stop)[:, None],
                           np.ones((n_bins - start - 2, 1))], axis=0)  # fmt: skip


def lp_filter(spec: np.ndarray, start: int, stop: int) -> np.ndarray:
    g = 1.0
    for b in range(start, stop):
        g -= 1 / (stop - start)
        spec[:, b, :] = g * spec[:, b, :]
    spec[:, stop:, :] *= 0
    return spec


def hp_filter(spec: np.ndarray, start: int, stop: int) -> np.ndarray:
    g = 1.0
    for b in range(start, stop, -1):
        g -= 1 / (start - stop)
        spec[:, b, :] = g * spec[:, b, :]
    spec[:, 0 : stop + 1, :] *= 0
    return spec


def combine(specs: Mapping[int, np.ndarray], mp: Mapping[str, Any], v51: bool) -> np.ndarray:
    """audio-separator's combine_spectrograms: [2, bins + 1, frames] complex64."""
    frames = min(s.shape[2] for s in specs.values())
    out = np.zeros((2, mp["bins"] + 1, frames), dtype=np.complex64)
    offset = 0
    bands = len(mp["band"])
    for d in range(1, bands + 1):
        bp = mp["band"][d]
        h = bp["crop_stop"] - bp["crop_start"]
        out[:, offset : offset + h, :frames] = specs[d][:, bp["crop_start"] : bp["crop_stop"], :frames]
        offset += h
    if offset > mp["bins"]:
        raise ModelError("VR modelparams: the bands' bins exceed 'bins'")
    if mp["pre_filter_start"] > 0:
        if v51:
            out *= lp_mask(out.shape[1], mp["pre_filter_start"], mp["pre_filter_stop"])
        elif bands == 1:
            out = lp_filter(out, mp["pre_filter_start"], mp["pre_filter_stop"])
        else:
            gp: float = 1
            for b in range(mp["pre_filter_start"] + 1, mp["pre_filter_stop"]):
                g = math.pow(10, -(b - mp["pre_filter_start"]) * (3.5 - gp) / 20.0)
                gp = g
                out[:, b, :] *= g
    return out


def to_wave(spec_m: np.ndarray, mp: Mapping[str, Any], v51: bool, extra_bins_h: int | None = None,
            extra_bins: np.ndarray | None = None) -> np.ndarray:
    """audio-separator's cmb_spectrogram_to_wave (float64 [2, n])."""
    bands = len(mp["band"])
    offset = 0
    wave: np.ndarray | None = None
    for d in range(1, bands + 1):
        bp = mp["band"][d]
        spec_s = np.zeros((2, bp["n_fft"] // 2 + 1, spec_m.shape[2]), dtype=complex)
        h = bp["crop_stop"] - bp["crop_start"]
        spec_s[:, bp["crop_start"] : bp["crop_stop"], :] = spec_m[:, offset : offset + h, :]
        offset += h
        if d == bands:
            if extra_bins_h:
                assert extra_bins is not None, "extra_bins_h needs extra_bins"
                top = bp["n_fft"] // 2
                spec_s[:, top - extra_bins_h : top, :] = extra_bins[:, :extra_bins_h, :]
            if bp["hpf_start"] > 0:
                if v51:
                    spec_s *= hp_mask(spec_s.shape[1], bp["hpf_start"], bp["hpf_stop"] - 1)
                else:
                    spec_s = hp_filter(spec_s, bp["hpf_start"], bp["hpf_stop"] - 1)
            part = spectrogram_to_wave(spec_s, bp["hl"], mp, d, v51)
            if bands == 1:
                wave = part
            else:
                assert wave is not None  # the lower bands ran first
                wave = np.add(wave, part)
        else:
            next_sr = mp["band"][d + 1]["sr"]
            if d == 1:
                if v51:
                    spec_s *= lp_mask(spec_s.shape[1], bp["lpf_start"], bp["lpf_stop"])
                else:
                    spec_s = lp_filter(spec_s, bp["lpf_start"], bp["lpf_stop"])
                low = spectrogram_to_wave(spec_s, bp["hl"], mp, d, v51)
                wave = resample(low, bp["sr"], next_sr, MERGE_RESAMPLER)
            else:
                if v51:
                    spec_s *= hp_mask(spec_s.shape[1], bp["hpf_start"], bp["hpf_stop"] - 1)
                    spec_s *= lp_mask(spec_s.shape[1], bp["lpf_start"], bp["lpf_stop"])
                else:
                    spec_s = hp_filter(spec_s, bp["hpf_start"], bp["hpf_stop"] - 1)
                    spec_s = lp_filter(spec_s, bp["lpf_start"], bp["lpf_stop"])
                assert wave is not None  # band 1 ran first
                wave2 = np.add(wave, spectrogram_to_wave(spec_s, bp["hl"], mp, d, v51))
                wave = resample(wave2, bp["sr"], next_sr, MERGE_RESAMPLER)
    assert wave is not None
    return wave


def mirroring(spec_m: np.ndarray, input_high_end: np.ndarray, mp: Mapping[str, Any]) -> np.ndarray:
    """audio-separator's spec_utils.mirroring('mirroring', ...) for high-end process."""
    start = mp["pre_filter_start"] - 10 - input_high_end.shape[1]
    mirror = np.flip(np.abs(spec_m[:, start : mp["pre_filter_start"] - 10, :]), 1)
    mirror = mirror * np.exp(1.0j * np.angle(input_high_end))
    return np.where(np.abs(input_high_end) <= np.abs(mirror), input_high_end, mirror)
