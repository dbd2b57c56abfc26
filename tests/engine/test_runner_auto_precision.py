"""`--precision auto`: the choice from a capability probe, and the runner that applies it.

The choice is a pure function of the device type and a `PrecisionProbe` (native bf16
or not, and how much faster bf16 ran than fp32), so every branch is tested here with
the probe's result given, on any machine; the real probe is checked against torch's
own answer.
"""

from __future__ import annotations

import logging

import pytest
import torch
from toy_models import PositionalToy

from stemsplit.engine.runner import (
    MIN_BF16_SPEEDUP,
    ModelRunner,
    PrecisionProbe,
    choose_precision,
    probe_precision,
)
from stemsplit.models.base import Recipe

# Rerun with oneDNN and ATen capped at AVX2 by the README's test command (cpu_paths).
pytestmark = pytest.mark.cpu_paths

RECIPE = Recipe(segment_samples=64, overlap=0.25, window="triangle", padding="context",
                normalization="none", batch_size=1)  # fmt: skip


@pytest.mark.parametrize(
    ("device", "probe", "expected", "why"),
    [
        ("cpu", PrecisionProbe(native_bf16=False), "fp32", "emulated"),
        ("cpu", PrecisionProbe(native_bf16=False, bf16_speedup=5.0), "fp32", "emulated"),
        ("cpu", PrecisionProbe(native_bf16=True), "fp32", "not measured"),
        ("cpu", PrecisionProbe(native_bf16=True, bf16_speedup=1.05), "fp32", "1.05x"),
        ("cpu", PrecisionProbe(native_bf16=True, bf16_speedup=MIN_BF16_SPEEDUP), "bf16", "1.30x"),
        ("cpu", PrecisionProbe(native_bf16=True, bf16_speedup=2.4), "bf16", "2.40x"),
        ("cuda", PrecisionProbe(native_bf16=True), "bf16", "GPU runs bf16"),
        ("cuda", PrecisionProbe(native_bf16=False), "fp32", "no native bf16"),
        ("mps", PrecisionProbe(native_bf16=True, bf16_speedup=3.0), "fp32", "mps"),
    ],
)
def test_choice_follows_the_probe(device: str, probe: PrecisionProbe, expected: str,
                                  why: str) -> None:  # fmt: skip
    precision, reason = choose_precision(device, probe)
    assert precision == expected
    assert why in reason


def test_real_probe_agrees_with_onednn() -> None:
    probe = probe_precision("cpu")
    assert probe.native_bf16 == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if probe.native_bf16:
        assert probe.bf16_speedup is not None and probe.bf16_speedup > 0
    else:
        assert probe.bf16_speedup is None  # not timed where bf16 would be emulated


def test_runner_resolves_auto_and_says_why(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="stemsplit"):
        runner = ModelRunner(PositionalToy(8000, RECIPE), "cpu", "auto")
    expected, reason = choose_precision("cpu", probe_precision("cpu"))
    assert runner.precision == expected
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"--precision auto: {expected} ({reason})" in messages
    # auto never picks an emulated precision, so it never warns.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
