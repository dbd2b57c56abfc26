"""Comparing a reimplementation's output with a reference's: the one SNR the tests use.

Random-weight networks can be ill-conditioned (the larger RoFormer fixtures' own fp32
and fp64 forwards differ by 53-69 dB), so outputs of the fixtures are compared by SNR plus
exact shape and length; tight absolute bounds stay where the reference runs inside the
test. A fixture whose meta.json records its network's fp32-vs-fp64 agreement is held to
MARGIN_DB under it (another CPU's rounding moves an output about as far as fp32 does).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE_SNR_DB = 50.0  # the floor: below every RoFormer fixture's own fp32-vs-fp64 agreement
MARGIN_DB = 30.0


def fixture_snr_db(folder: Path) -> float:
    """The SNR bar for a fixture's outputs: MARGIN_DB under the agreement its meta.json
    records, never under FIXTURE_SNR_DB (nor without a meta.json)."""
    meta = folder / "meta.json"
    agreement = json.loads(meta.read_text()).get("fp32_vs_fp64_snr_db") if meta.is_file() else None
    return FIXTURE_SNR_DB if agreement is None else max(FIXTURE_SNR_DB, agreement - MARGIN_DB)


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2), in float64."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(estimate, dtype=np.float64)) ** 2))
    return float(10 * np.log10(float(np.sum(reference**2)) / max(noise, 1e-30)))
