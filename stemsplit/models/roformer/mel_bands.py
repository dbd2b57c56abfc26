"""Mel-Band RoFormer's overlapping frequency bands, computed without librosa.

MSST builds `librosa.filters.mel(sr, n_fft, n_mels=num_bands)` (slaney mel scale,
slaney area normalisation, fmin 0, fmax sr / 2), forces the first bin of the first
band and the last bin of the last band on, and keeps `weights > 0` as a binary
band membership. Neighbouring bands overlap, so each bin belongs to one or two
bands; the network averages its masks where they overlap.

The arithmetic below follows librosa's (float64, same order of operations), so the
`> 0` test picks the same bins, including the ones whose weight is barely positive.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies: npt.ArrayLike) -> np.ndarray:
    """Slaney mel of each frequency in Hz (librosa.hz_to_mel, htk=False)."""
    hz = np.asanyarray(frequencies, dtype=np.float64)
    mels = hz / _F_SP
    log_region = hz >= _MIN_LOG_HZ
    mels = np.where(
        log_region,
        _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP,
        mels,
    )
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of `hz_to_mel` (librosa.mel_to_hz, htk=False)."""
    mels = np.asanyarray(mels, dtype=np.float64)
    frequencies = _F_SP * mels
    log_region = mels >= _MIN_LOG_MEL
    return np.where(
        log_region, _MIN_LOG_HZ * np.exp(_LOG_STEP * (mels - _MIN_LOG_MEL)), frequencies
    )


def mel_filterbank(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """Triangular slaney-normalised mel filters, shape [num_bands, n_fft // 2 + 1].

    Same values as `librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_bands)`
    (float32 result, computed in float64).
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_edges = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), num_bands + 2)
    hz_edges = mel_to_hz(mel_edges)
    edge_gaps = np.diff(hz_edges)
    ramps = np.subtract.outer(hz_edges, fft_freqs)

    weights = np.zeros((num_bands, len(fft_freqs)), dtype=np.float32)
    for band in range(num_bands):
        lower = -ramps[band] / edge_gaps[band]
        upper = ramps[band + 2] / edge_gaps[band + 1]
        weights[band] = np.maximum(0, np.minimum(lower, upper))
    # Slaney normalisation: each triangle has unit area in Hz.
    area_norm = 2.0 / (hz_edges[2 : num_bands + 2] - hz_edges[:num_bands])
    weights *= area_norm[:, np.newaxis]
    return weights


def mel_band_membership(sample_rate: float, n_fft: int, num_bands: int) -> np.ndarray:
    """Boolean [num_bands, n_fft // 2 + 1]: which STFT bins each band covers (MSST).

    The first bin (DC) is not covered by librosa's first filter and the last bin's
    weight is ~1e-18 (0 on some platforms), so MSST forces both on.
    """
    weights = mel_filterbank(sample_rate, n_fft, num_bands)
    weights[0, 0] = 1.0
    weights[-1, -1] = 1.0
    membership = weights > 0
    if not membership.any(axis=0).all():
        raise ValueError(
            f"{num_bands} mel bands leave some of the {weights.shape[1]} STFT bins uncovered"
        )
    return membership
