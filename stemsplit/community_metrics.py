"""The metrics the community ranks models by, as MSST computes them.

Music-Source-Separation-Training's `utils/metrics.py` (ZFTurbo, commit ccc011a) gives
MVSEP's and the deton24 guide's "fullness" and "bleedless" beside SDR; its `get_metrics`
takes `(channels, samples)` arrays, reference first, cropped to one length. These are
the same computations in numpy (float64 arithmetic; MSST runs float32 torch), with the
same STFT, mel and dB settings:

- `msst_si_sdr`: MSST's SI-SDR, which differs from the usual one (`metrics.si_sdr`): one
  scale for all channels, and its `eps = 1e-8` added to every element of both sums.
- `k_sdr`: SDR squashed to 0-100 by `100 log1p(clip(sdr, -K, K) + K) / log1p(2K)`, K = 10.
- `l1_freq`: `100 / (1 + 10 mean|S_est - S_ref|)` over STFT magnitudes (2048-point,
  hop 1024, centred with reflection, and no window: torch.stft's default rectangle).
- `bleedless_fullness`: magnitudes of a Hann 4096-point STFT (hop 1024, centred with
  zeros) through 512 slaney mel filters, in dB (`20 log10(max(x, 1e-10))`, floored at
  80 dB under the spectrogram's maximum over all channels); of `dB_est - dB_ref`,
  bleedless = `100 / (1 + mean of the positive differences)` (energy the estimate has and
  the reference lacks) and fullness = `100 / (1 + |mean of the negative ones|)`.
- `aura_stft`: auraloss' `STFTLoss(w_log_mag=1, w_lin_mag=0, w_sc=1)` (Hann 1024, hop
  256, magnitudes floored at sqrt(1e-8)): spectral convergence `|S_est - S_ref| / |S_est|`
  (auraloss divides by its second argument, MSST passes the estimate there) plus the
  mean |log S_ref - log S_est|, as `100 / (1 + 10 loss)`.
- `aura_mrstft`: the mean of that loss at (1024, 256), (2048, 512), (4096, 1024) on 128
  mel bands, after auraloss' 101-tap A-weighting FIR (least-squares fit, designed with
  scipy, the one metric that needs it), as `100 / (1 + 10 loss)`.

Checked against MSST's own values (tests/test_community_metrics.py): within ~1e-5,
except bleedless/fullness where the estimate equals the reference to float32 precision in
many mel bins: whether such a bin's dB difference is counted as positive, negative or
zero is decided by rounding, and MSST's float32 and these float64 values then part by
tenths (a brick-wall low-pass copy of the reference did: 0.2 / 0.5).

- `log_wmse`: torch-log-wmse's logWMSE as MSST calls it (`LogWMSE(audio_length, 44100,
  return_as_loss=False, bypass_filter=False)(mixture, reference, estimate)`), which only
  its 0.3.x releases accept (1.0.0 removed both arguments and changed the computation):
  each signal through a hearing-sensitivity FIR, scaled by the weighted mixture's RMS,
  differences under -68 dB zeroed, `-4 ln(mean square + 1e-8)` per channel, averaged.
  The FIR is rebuilt here from its published design (`_hearing_filter`), not installed:
  the package pulls a torchaudio built for CUDA torch.

MSST evaluates the mel filters and the A-weighting at 44100 Hz whatever the audio's
rate (`MSST_RATE`); so do these, so the numbers compare with MSST's and MVSEP's.
Spectrograms are built a block of frames at a time, so memory stays near one copy of
the mel spectrogram (512 x frames) however long the track.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Literal

import numpy as np

MSST_RATE = 44100
MSST_EPS = 1e-8  # MSST's si_sdr
K_SDR_K = 10.0
# torch-log-wmse 0.3.x: weighted differences under -68 dB of the mixture count as silence;
# the log is scaled by -4 to read like an SDR; 1e-8 is added to the mean square and the RMS.
LOG_WMSE_GATE = 10 ** (-68 / 20)
LOG_WMSE_SCALE = -4.0
LOG_WMSE_EPS = 1e-8
_FRAMES_PER_BLOCK = 128


def msst_si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MSST's `si_sdr(reference, estimate)` on `(channels, samples)` arrays, in dB."""
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    count = reference.size  # MSST adds eps to each element of both sums
    scale = (np.sum(estimate * reference) + MSST_EPS * count) / (
        np.sum(reference**2) + MSST_EPS * count
    )
    target = reference * scale
    ratio = np.sum(target**2) / (np.sum((target - estimate) ** 2) + MSST_EPS) + MSST_EPS
    return float(10 * np.log10(ratio))


def k_sdr(sdr: float, k: float = K_SDR_K) -> float:
    """MSST's bounded SDR: 0 at -K dB, 100 at +K dB and above."""
    sdr = max(min(sdr, k), -k + 1e-6)
    return 100.0 * math.log1p(sdr + k) / math.log1p(2 * k)


def _magnitudes(audio: np.ndarray, n_fft: int, hop: int, window: np.ndarray | None,
                pad_mode: Literal["reflect", "constant"]) -> Iterator[np.ndarray]:  # fmt: skip
    """|torch.stft(audio, n_fft, hop, window, center=True, pad_mode)| as blocks of frames,
    each `[channels, n_fft // 2 + 1, frames]` (float64)."""
    pad = n_fft // 2
    padded = np.pad(np.asarray(audio, dtype=np.float64), ((0, 0), (pad, pad)), mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop]
    for start in range(0, frames.shape[1], _FRAMES_PER_BLOCK):
        block = frames[:, start : start + _FRAMES_PER_BLOCK]
        if window is not None:
            block = block * window
        yield np.abs(np.fft.rfft(block, axis=-1)).transpose(0, 2, 1)


def _hann(length: int) -> np.ndarray:
    """torch.hann_window(length): the periodic Hann window."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def l1_freq(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MSST's `L1Freq_metric` (0-100, higher is better)."""
    total, count = 0.0, 0
    for ref, est in zip(_magnitudes(reference, 2048, 1024, None, "reflect"),
                        _magnitudes(estimate, 2048, 1024, None, "reflect")):  # fmt: skip
        total += float(np.sum(np.abs(est - ref)))
        count += ref.size
    return 100.0 / (1.0 + 10 * total / count)


@lru_cache(maxsize=4)
def _mel(n_fft: int, num_bands: int) -> np.ndarray:
    """librosa's `filters.mel(sr=44100, n_fft, n_mels)` (the one mel layout in stemsplit)."""
    from stemsplit.models.roformer.mel_bands import mel_filterbank

    return mel_filterbank(MSST_RATE, n_fft, num_bands).astype(np.float64)


def _mel_db(audio: np.ndarray) -> np.ndarray:
    """The mel spectrogram in dB as MSST's bleed_full takes it, `[channels, 512, frames]`."""
    mel = _mel(4096, 512)
    blocks = [mel @ block for block in _magnitudes(audio, 4096, 1024, _hann(4096), "constant")]
    db = 20 * np.log10(np.maximum(np.concatenate(blocks, axis=-1), 1e-10))
    return np.maximum(db, db.max() - 80.0)  # torchaudio AmplitudeToDB(top_db=80)


def bleedless_fullness(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """MSST's `bleed_full`: (bleedless, fullness), each 0-100, higher is better."""
    difference = _mel_db(estimate) - _mel_db(reference)
    above, below = difference[difference > 0], difference[difference < 0]
    mean_above = float(above.mean()) if above.size else 0.0
    mean_below = float(below.mean()) if below.size else 0.0
    return 100.0 / (mean_above + 1.0), 100.0 / (-mean_below + 1.0)


def _stft_loss(first: np.ndarray, second: np.ndarray, n_fft: int, hop: int,
               mel_bands: int | None) -> float:  # fmt: skip
    """auraloss `STFTLoss(...)(first, second)` with w_sc = w_log_mag = 1 (MSST's
    settings): spectral convergence over `second`'s norm plus the log-magnitude L1."""
    mel = _mel(n_fft, mel_bands) if mel_bands else None
    difference = norm = log_l1 = 0.0
    count = 0
    window = _hann(n_fft)
    for a, b in zip(_magnitudes(first, n_fft, hop, window, "reflect"),
                    _magnitudes(second, n_fft, hop, window, "reflect")):  # fmt: skip
        a, b = np.maximum(a, math.sqrt(1e-8)), np.maximum(b, math.sqrt(1e-8))
        if mel is not None:
            a, b = mel @ a, mel @ b
        difference += float(np.sum((b - a) ** 2))
        norm += float(np.sum(b**2))
        log_l1 += float(np.sum(np.abs(np.log(a) - np.log(b))))
        count += a.size
    return math.sqrt(difference) / math.sqrt(norm) + log_l1 / count


def aura_stft(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MSST's `AuraSTFT_metric` (0-100, higher is better)."""
    return 100.0 / (1.0 + 10 * _stft_loss(reference, estimate, 1024, 256, None))


def aura_mrstft(reference: np.ndarray, estimate: np.ndarray) -> float:
    """MSST's `AuraMRSTFT_metric` (0-100, higher is better); needs scipy."""
    taps = _a_weighting_taps()
    reference, estimate = _fir(reference, taps), _fir(estimate, taps)
    losses = [_stft_loss(reference, estimate, n_fft, n_fft // 4, 128)
              for n_fft in (1024, 2048, 4096)]  # fmt: skip
    return 100.0 / (1.0 + 10 * sum(losses) / len(losses))


@lru_cache(maxsize=1)
def _a_weighting_taps() -> np.ndarray:
    """auraloss' `FIRFilter("aw", fs=44100, ntaps=101)`: the IEC/CD 1672 analogue A-weighting
    curve, made digital (bilinear), sampled at 512 frequencies and fitted by a 101-tap
    least-squares FIR, kept as float32 as auraloss keeps it."""
    try:
        import scipy.signal
    except ImportError as err:
        from stemsplit.errors import UsageError

        raise UsageError("the aura_mrstft metric needs scipy: pip install scipy") from err
    f1, f2, f3, f4, a1000 = 20.598997, 107.65265, 737.86223, 12194.217, 1.9997
    numerator = [(2 * np.pi * f4) ** 2 * (10 ** (a1000 / 20)), 0, 0, 0, 0]
    denominator = np.polymul([1, 4 * np.pi * f4, (2 * np.pi * f4) ** 2],
                             [1, 4 * np.pi * f1, (2 * np.pi * f1) ** 2])  # fmt: skip
    denominator = np.polymul(np.polymul(denominator, [1, 2 * np.pi * f3]), [1, 2 * np.pi * f2])
    b, a = scipy.signal.bilinear(numerator, denominator, fs=MSST_RATE)
    frequencies, response = scipy.signal.freqz(b, a, worN=512, fs=MSST_RATE)
    taps = scipy.signal.firls(101, frequencies, abs(response), fs=MSST_RATE)
    return taps.astype(np.float32).astype(np.float64)


def _fir(audio: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """torch's conv1d(audio, taps, padding=len // 2) per channel: same length, zeros outside."""
    import scipy.signal

    audio = np.asarray(audio, dtype=np.float64)
    return np.stack([scipy.signal.oaconvolve(channel, taps[::-1], mode="same")
                     for channel in audio])  # fmt: skip


def log_wmse(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray) -> float:
    """MSST's `LogWMSE_metric(reference, estimate, mixture)` with torch-log-wmse 0.3.x on
    `(channels, samples)` arrays of one length (higher is better; 73.7 when exact).

    As MSST shapes its tensors, the stem's channels land on the package's stem axis and
    the mixture's on its channel axis: every stem channel is scaled by every mixture
    channel's level, and the channels x channels values are averaged.
    """
    taps = _hearing_filter()
    # MSST passes audio_length = samples / 44100 and the package keeps
    # floor(audio_length * 44100) samples: one fewer for some lengths (15, 23, ...).
    length = math.floor(reference.shape[-1] / MSST_RATE * MSST_RATE)
    errors = [_weighted(np.asarray(ref, np.float64) - est, taps)[:length]
              for ref, est in zip(reference, estimate)]  # fmt: skip
    levels = [math.sqrt(np.mean(_weighted(np.asarray(channel, np.float64), taps)[:length] ** 2))
              for channel in mixture]  # fmt: skip
    values = []
    for level in levels:
        for error in errors:
            scaled = error / (level + LOG_WMSE_EPS)
            scaled[np.abs(scaled) < LOG_WMSE_GATE] = 0.0
            values.append(LOG_WMSE_SCALE * math.log(float(np.mean(scaled**2)) + LOG_WMSE_EPS))
    return float(np.mean(values))


def _weighted(signal: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """`signal` through the FIR, aligned as torch-log-wmse 0.3.x aligns it: the full
    convolution from sample `(taps - 1) // 2` on, as long as the signal (FFT overlap-add)."""
    block, size = 1 << 16, 1 << 17  # size >= block + taps - 1: no wrap-around
    response = np.fft.rfft(taps, size)
    full = np.zeros(len(signal) + len(taps) - 1)
    for start in range(0, len(signal), block):
        piece = signal[start : start + block]
        used = len(piece) + len(taps) - 1
        full[start : start + used] += np.fft.irfft(np.fft.rfft(piece, size) * response, size)[:used]
    offset = (len(taps) - 1) // 2
    return full[offset : offset + len(signal)]


@lru_cache(maxsize=1)
def _hearing_filter() -> np.ndarray:
    """torch-log-wmse's 4000-tap hearing-sensitivity FIR (its `filter_ir`), rebuilt from the
    design in its `dev/create_freq_weighting_filter_ir.py` (after Fenton & Lee 2017, with
    audiomentations' filters): a +5 dB high shelf at 1500 Hz (Q 1/sqrt 2), a 2nd-order
    Butterworth high-pass at 120 Hz, a +2.5 dB peak at 500 Hz (Q 1.5/sqrt 2) and a
    1st-order Butterworth low-pass at 10 kHz run forwards and backwards. The product of
    their magnitudes on scipy's `freqz(worN=4097)` grid (k pi / 4097) is made zero-phase
    by an 8192-point inverse FFT, centred, and 4000 taps kept: the package's shipped taps
    to 2e-8 (tests/test_community_metrics.py)."""
    n_fft = 8192
    omega = np.pi * np.arange(n_fft // 2 + 1) / (n_fft // 2 + 1)
    tangent = np.tan(omega / 2)  # Butterworth by the bilinear transform, cut-off prewarped
    with np.errstate(divide="ignore"):  # the high-pass is 0 at DC
        high_pass = 1 / np.sqrt(1 + (math.tan(math.pi * 120 / MSST_RATE) / tangent) ** 4)
    low_pass_twice = 1 / (1 + (tangent / math.tan(math.pi * 10_000 / MSST_RATE)) ** 2)
    magnitude = (_cookbook_biquad(omega, 1500.0, 5.0, 1 / math.sqrt(2), shelf=True)
                 * _cookbook_biquad(omega, 500.0, 2.5, 1.5 / math.sqrt(2), shelf=False)
                 * high_pass * low_pass_twice)  # fmt: skip
    response = np.fft.fftshift(np.fft.irfft(magnitude, n_fft))
    centre = n_fft // 2 + 1
    return response[centre - 2000 : centre + 2000]


def _cookbook_biquad(omega: np.ndarray, centre_hz: float, gain_db: float, q: float,
                     shelf: bool) -> np.ndarray:  # fmt: skip
    """|H(e^jw)| of the Audio EQ Cookbook's high shelf or peaking biquad."""
    gain = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * centre_hz / MSST_RATE
    alpha, cos = math.sin(w0) / 2 / q, math.cos(w0)
    if shelf:
        root = 2 * math.sqrt(gain) * alpha
        b = [gain * ((gain + 1) + (gain - 1) * cos + root),
             -2 * gain * ((gain - 1) + (gain + 1) * cos),
             gain * ((gain + 1) + (gain - 1) * cos - root)]  # fmt: skip
        a = [(gain + 1) - (gain - 1) * cos + root, 2 * ((gain - 1) - (gain + 1) * cos),
             (gain + 1) - (gain - 1) * cos - root]  # fmt: skip
    else:
        b = [1 + alpha * gain, -2 * cos, 1 - alpha * gain]
        a = [1 + alpha / gain, -2 * cos, 1 - alpha / gain]
    z = np.exp(-1j * omega)
    return np.abs((b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2))


# Name -> function of (reference, estimate) for `stemsplit eval --metrics`.
COMMUNITY_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "msst_si_sdr": msst_si_sdr,
    "l1_freq": l1_freq,
    "aura_stft": aura_stft,
    "aura_mrstft": aura_mrstft,
}
