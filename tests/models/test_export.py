"""Exporting a network (`torch.export`, which ONNX and OpenVINO converters build on).

The oneDNN fast paths are torch-internal ops no exporter knows: while exporting, the
layers must take plain torch ops; and the eager model must still run afterwards, with
no cache holding a tensor made during the export (`benchmarks/bench_runtimes.py`).
"""

from __future__ import annotations

from fractions import Fraction

import torch
import torch.nn.functional as F

from stemsplit.models.demucs import build_demucs

SMALL = {"sources": ["drums", "bass", "other", "vocals"], "channels": 8, "t_heads": 4,
         "segment": Fraction(17, 10)}  # fmt: skip  # a length no other test uses


class _Network(torch.nn.Module):
    """HTDemucs between its STFT and ISTFT: every layer with weights."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, xt, skips = self.model._encode(x, xt)
        x, xt = self.model._bottleneck(x, xt)
        return self.model._decode(x, xt, skips)


def test_htdemucs_exports_plain_ops_and_still_runs_eagerly() -> None:
    torch.manual_seed(0)
    model = build_demucs("HTDemucs", (), SMALL).eval()
    mix = torch.randn(1, 2, model.training_length)
    with torch.no_grad():
        _, x, xt, _ = model._front_end(mix)
    network = _Network(model).eval()

    program = torch.export.export(network, (x, xt), strict=False)  # before any eager run
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert targets and not any("mkldnn" in target for target in targets), sorted(targets)

    with torch.no_grad():
        eager = network(x, xt)  # raised on a cached export-time tensor before
        exported = program.module()(x, xt)
    for got, expected in zip(exported, eager, strict=True):
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4 * expected.abs().max()


def test_export_sees_plain_linear_and_attention() -> None:
    from stemsplit.models.ops import fast_attention, fast_linear

    class Block(torch.nn.Module):
        def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            h = fast_linear(x, w, gelu=True)
            q = h.view(1, 1, *h.shape)
            return fast_attention(q, q, q)[0, 0]

    x, w = torch.randn(300, 16), torch.randn(16, 16)
    program = torch.export.export(Block(), (x, w), strict=False)
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not any("mkldnn" in target for target in targets), sorted(targets)
    expected = F.scaled_dot_product_attention(*(F.gelu(x @ w.t())[None, None],) * 3)[0, 0]
    assert torch.allclose(program.module()(x, w), expected, atol=1e-5)
