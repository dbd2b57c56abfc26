"""Matmuls that every architecture shares: `F.linear` through oneDNN on CPU.

torch sends fp32 CPU matmuls to MKL's sgemm, which runs at less than half oneDNN's
speed on AMD CPUs (2.2-2.5x measured on an AVX-512 EPYC, docs/performance.md); oneDNN
also fuses the exact GELU or a residual add into the matmul. Same numbers as
`F.linear` within float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_ONEDNN_LINEAR = _onednn_linear_available()


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """CPU matmuls go to oneDNN: torch sends fp32 ones to MKL's sgemm, which runs at
    less than half oneDNN's speed on AMD CPUs; bf16 ones gain the fused GELU/add.
    Under autocast F.linear is used, as autocast must see the call."""
    return (
        _ONEDNN_LINEAR
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == x.dtype
        and not torch.is_autocast_enabled("cpu")
    )


def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False
) -> torch.Tensor:
    """`F.linear` (then exact GELU with `gelu`), through oneDNN on CPU."""
    if _use_onednn(x, weight):
        if gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def fast_linear_add(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor
) -> torch.Tensor:
    """`residual + F.linear(x, weight, bias)`, the add fused into oneDNN's matmul on CPU."""
    if _use_onednn(x, weight) and residual.dtype == x.dtype:
        residual = residual.contiguous()
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return residual + F.linear(x, weight, bias)
