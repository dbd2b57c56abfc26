"""Separation quality metrics on numpy arrays: uSDR, SI-SDR and (optionally) BSSEval v4 SDR.

All functions take `(channels, samples)` arrays of the same shape, reference first.
Sums are done in float64 whatever the input dtype. No torch here.

- `usdr`: the "utterance SDR" of the Music Demixing challenges (MDX 2021/2023) and of
  Music-Source-Separation-Training (MSST `utils/metrics.py: sdr`):
  `10 log10((sum s^2 + eps) / (sum (s - s_hat)^2 + eps))`, the sums over channels and
  samples together, `eps = 1e-8` added to numerator and denominator (MSST's value; the
  MDX starter kit and demucs' `new_sdr` use 1e-7). A perfect estimate scores
  `10 log10(sum s^2 / eps + 1)`, not infinity.
- `si_sdr`: scale-invariant SDR (Le Roux et al., 2019) with torchmetrics'
  `scale_invariant_signal_distortion_ratio(preds, target, zero_mean=False)` convention,
  computed per channel over samples and then averaged over channels (the arithmetic mean
  of the per-channel dB values, as torchmetrics' `ScaleInvariantSignalDistortionRatio`
  averages over its batch):
  `alpha = (<s_hat, s> + eps) / (<s, s> + eps)`, `t = alpha s`,
  `10 log10((|t|^2 + eps) / (|t - s_hat|^2 + eps))`, with `eps` the float64 machine epsilon
  (torchmetrics uses `finfo(dtype).eps` of its input, so it agrees on float64 tensors).
- `bss_sdr`: museval's BSSEval v4 SDR (`museval.evaluate`, 1 s windows and hops), the
  median over frames with NaN frames (silent references) ignored, as museval's aggregate
  and the SiSEC/MUSDB tables do. Only when the optional `museval` package imports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from stemsplit.errors import UsageError

logger = logging.getLogger(__name__)

USDR_EPS = 1e-8  # MSST utils/metrics.py `sdr`
SI_SDR_EPS = float(np.finfo(np.float64).eps)  # torchmetrics: finfo(dtype).eps, float64 here


def _pair(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 `(channels, samples)`; a 1-D array is one channel."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if reference.shape != estimate.shape or reference.ndim != 2:
        raise UsageError(
            f"reference {reference.shape} and estimate {estimate.shape} must both be "
            "(channels, samples) of the same shape: align them first"
        )
    return reference, estimate


def usdr(reference: np.ndarray, estimate: np.ndarray, eps: float = USDR_EPS) -> float:
    """MDX/MSST utterance SDR in dB: one number over all channels and samples."""
    reference, estimate = _pair(reference, estimate)
    signal = float(np.sum(np.square(reference))) + eps
    error = float(np.sum(np.square(reference - estimate))) + eps
    return 10.0 * float(np.log10(signal / error))


def si_sdr_channels(
    reference: np.ndarray, estimate: np.ndarray, eps: float = SI_SDR_EPS
) -> np.ndarray:
    """SI-SDR in dB of each channel, `(channels,)`: torchmetrics' formula, zero_mean=False."""
    reference, estimate = _pair(reference, estimate)
    alpha = (np.sum(estimate * reference, axis=-1, keepdims=True) + eps) / (
        np.sum(np.square(reference), axis=-1, keepdims=True) + eps
    )
    target = alpha * reference
    noise = target - estimate
    ratio = (np.sum(np.square(target), axis=-1) + eps) / (np.sum(np.square(noise), axis=-1) + eps)
    return 10.0 * np.log10(ratio)


def si_sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = SI_SDR_EPS) -> float:
    """SI-SDR in dB: the mean over channels of `si_sdr_channels`."""
    return float(np.mean(si_sdr_channels(reference, estimate, eps)))


@lru_cache(maxsize=1)
def museval_error() -> str | None:
    """Why `museval` cannot be used here, or None when it can."""
    try:
        import museval  # noqa: F401
    except ImportError:
        return "the optional museval package is not installed (pip install museval)"
    except Exception as err:  # museval's import chain can fail many ways
        # museval imports musdb -> stempeg, which raises RuntimeError without ffmpeg.
        return f"museval is installed but cannot be imported: {str(err).splitlines()[0]}"
    return None


def museval_available() -> bool:
    """True when BSSEval v4 SDR (`bss_sdr`) can be computed."""
    return museval_error() is None


def bss_sdr(
    references: Sequence[np.ndarray], estimates: Sequence[np.ndarray], samplerate: int
) -> list[float]:
    """BSSEval v4 SDR in dB of each source: median over 1 s frames (museval.evaluate).

    `references[i]` and `estimates[i]` are `(channels, samples)`, all of one shape;
    the sources are evaluated together as museval does for a MUSDB track.
    """
    reason = museval_error()
    if reason is not None:
        raise UsageError(f"BSSEval SDR needs museval: {reason}")
    import museval

    if not references:
        return []
    pairs = [_pair(r, e) for r, e in zip(references, estimates, strict=True)]
    # museval wants (sources, samples, channels).
    ref = np.stack([r.T for r, _ in pairs])
    est = np.stack([e.T for _, e in pairs])
    sdr, _isr, _sir, _sar = museval.evaluate(ref, est, win=samplerate, hop=samplerate)
    values = []
    for frames in np.atleast_2d(sdr):
        finite = frames[~np.isnan(frames)]
        values.append(float(np.median(finite)) if finite.size else float("nan"))
    return values
