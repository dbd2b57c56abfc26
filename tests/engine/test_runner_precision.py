"""ModelRunner's precision handling on CPU: the warning where bf16/fp16 are emulated."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from toy_models import PositionalToy

from stemsplit.engine.runner import ModelRunner
from stemsplit.errors import UsageError
from stemsplit.models.base import Recipe

# Rerun with oneDNN and ATen capped at AVX2 by the README's test command (cpu_paths).
pytestmark = pytest.mark.cpu_paths

RECIPE = Recipe(segment_samples=64, overlap=0.25, window="triangle", padding="context",
                normalization="none", batch_size=1)  # fmt: skip


def _native(precision: str) -> bool:
    """oneDNN's own answer (torch), the reference for whether to warn."""
    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[precision]
    return bool(getattr(torch.ops.mkldnn, check)())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_emulated_precision_warns_on_cpu(precision: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="stemsplit"):
        ModelRunner(PositionalToy(8000, RECIPE), "cpu", precision)
    warned = any(f"--precision {precision}" in r.getMessage() for r in caplog.records)
    assert warned == (not _native(precision))


def test_fp32_never_warns(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="stemsplit"):
        runner = ModelRunner(PositionalToy(8000, RECIPE), "cpu", "fp32")
    assert not caplog.records
    out = runner(np.ones((1, 2, 64), dtype=np.float32))
    assert out.dtype == np.float32 and out.shape == (1, 2, 2, 64)


def test_unknown_precision_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown precision"):
        ModelRunner(PositionalToy(8000, RECIPE), "cpu", "int4")
