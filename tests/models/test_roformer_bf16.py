"""The RoFormers' own bf16 path (CPU bf16 autocast: band split to masks in bf16 with
weights cast once) stays close to fp32 for every trunk variant, and the conformers,
which opt out, still run under plain autocast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from parity import snr_db
from test_roformer import msst_config, small

from stemsplit.models.roformer import build_roformer
from stemsplit.zoo.safe_yaml import load_yaml

# Rerun with oneDNN and ATen capped at AVX2 by the README's test command (cpu_paths).
pytestmark = pytest.mark.cpu_paths

DATA = Path(__file__).resolve().parents[1] / "data" / "msst"

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("bs_roformer", {}),
    ("bs_roformer", {"linear_transformer_depth": 1, "skip_connection": True}),
    ("mel_band_roformer", {}),
    ("bs_roformer_experimental", {"use_value_residual_learning": True}),
    ("bs_conformer", {}),
]


def _build(architecture: str, changes: dict[str, Any]) -> torch.nn.Module:
    base = architecture.replace("_experimental", "").replace("conformer", "roformer")
    model = small(base, **changes)
    if architecture.endswith("_experimental"):
        model.pop("zero_dc", None)
    config = msst_config(model)
    if architecture == "bs_conformer":  # a conformer's own keys: its fixture's config
        config = load_yaml(DATA / "bs_conformer_linear_skip" / "config.yaml")
    torch.manual_seed(3)
    network = build_roformer(architecture, config).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return network


@pytest.mark.parametrize(("architecture", "changes"), VARIANTS)
def test_bf16_close_to_fp32(architecture: str, changes: dict[str, Any]) -> None:
    network = _build(architecture, changes)
    mix = torch.randn(1, 2, 44100, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.inference_mode():
        expected = network(mix)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = network(mix)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    # bf16 keeps ~8 bits of mantissa: 40-43 dB measured on viperx-sized nets.
    assert snr_db(got.numpy(), expected.numpy()) >= 30


def test_bf16_weights_follow_a_new_state_dict() -> None:
    """The cached bf16 weights are dropped when load_state_dict changes the parameters."""
    first = _build("bs_roformer", {})
    torch.manual_seed(11)
    second = _build("bs_roformer", {})
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    mix = torch.randn(1, 2, 22050, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = first(mix)
        expected = second(mix)
    first.load_state_dict(second.state_dict())
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = first(mix)
    assert not torch.equal(before, expected)
    assert torch.equal(after, expected)
