"""Comparing a reimplementation's output with a reference's: the one SNR the tests use.

Random-weight networks can be ill-conditioned (the RoFormer fixtures' own fp32 and fp64
forwards differ by 53-69 dB), so outputs of the fixtures are compared by SNR plus exact
shape and length; tight absolute bounds stay where the reference runs inside the test.
"""

from __future__ import annotations

import numpy as np

FIXTURE_SNR_DB = 50.0  # below every RoFormer fixture's own fp32-vs-fp64 agreement


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2), in float64."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(estimate, dtype=np.float64)) ** 2))
    return float(10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-30)))
