"""`skipped_random_init`: no random draws while building, everything else as usual."""

from __future__ import annotations

import torch
from torch import nn

from stemsplit.models.no_init import skipped_random_init


def test_random_fills_are_skipped_and_other_ops_run() -> None:
    zeros = torch.zeros(64)
    state = torch.get_rng_state()
    with skipped_random_init():
        nn.init.kaiming_uniform_(zeros.view(8, 8))
        nn.init.xavier_normal_(zeros.view(8, 8))
        zeros.uniform_(-1, 1)
        ones = torch.ones(3) * 2
        lstm = nn.LSTM(4, 5)
    assert torch.equal(zeros, torch.zeros(64))
    assert torch.equal(ones, torch.full((3,), 2.0))
    assert torch.equal(torch.get_rng_state(), state)  # nothing was drawn
    assert lstm.weight_ih_l0.requires_grad  # still an ordinary module


def test_built_then_loaded_equals_the_usual_way() -> None:
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv1d(2, 8, 3), nn.GroupNorm(2, 8), nn.Linear(6, 4))

    torch.manual_seed(0)
    reference = build().eval()
    with skipped_random_init():
        fast = build()
    fast.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 2, 8)
    assert torch.equal(fast.eval()(x), reference(x))
