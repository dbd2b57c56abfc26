"""The live pass against file mode's pass, on position-dependent toy models, for every
recipe kind, odd lengths and block sizes; memory of the ring over length."""

from __future__ import annotations

import numpy as np
import pytest
from toy_models import PositionalToy

from stemsplit.engine.live import LiveInput, live_stream
from stemsplit.engine.runner import separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.models.base import Recipe
from stemsplit.options import EngineSettings

RATE = 1000
RECIPES = {
    "demucs": (Recipe(400, 0.25, "triangle", "context", "none", 2), 512),
    "demucs-plain": (Recipe(300, 0.25, "triangle", "context", "none", 1), None),
    "msst": (Recipe(400, 0.5, "fade", "reflect-border", "none", 3), None),
    "msst-demucs": (Recipe(400, 0.5, "uniform", "zeros", "none", 1), None),
}


def run_live(model, audio, block, settings):
    hub = LiveInput((audio[:, s : s + block] for s in range(0, audio.shape[1], block)), RATE)
    source = hub.source(RATE)
    stream = live_stream(model, source, settings, lambda x: _call(model, x), False)
    return np.concatenate(list(stream), axis=-1), source


def _call(model, batch):
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize("kind", sorted(RECIPES))
@pytest.mark.parametrize("length", [1, 150, 399, 401, 799, 801, 2345, 5003])
def test_live_pass_equals_file_pass(kind, length) -> None:
    recipe, pad_to = RECIPES[kind]
    model = PositionalToy(RATE, recipe, pad_to)
    audio = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    settings = EngineSettings(device="cpu")
    expected = np.concatenate(list(separate_stream(model, ArraySource(audio, RATE), settings,
                                                   lambda x: _call(model, x))), axis=-1)  # fmt: skip
    for block in (1, 97, 1000, 10**6):
        live, _ = run_live(model, audio, block, settings)
        assert live.shape == expected.shape
        np.testing.assert_allclose(live, expected, atol=1e-6, err_msg=f"{kind} block {block}")


def test_shifts_match_file_mode() -> None:
    recipe, pad_to = RECIPES["demucs"]
    model = PositionalToy(RATE, recipe, pad_to)
    audio = np.random.default_rng(0).standard_normal((2, 3001)).astype(np.float32)
    settings = EngineSettings(device="cpu", shifts=2, seed=3)
    expected = np.concatenate(list(separate_stream(model, ArraySource(audio, RATE), settings,
                                                   lambda x: _call(model, x))), axis=-1)  # fmt: skip
    live, _ = run_live(model, audio, 250, settings)
    np.testing.assert_allclose(live, expected, atol=1e-6)


def test_the_ring_does_not_grow_with_length() -> None:
    recipe, pad_to = RECIPES["msst"]
    model = PositionalToy(RATE, recipe, pad_to)
    peaks = []
    for seconds in (20, 200):
        audio = np.zeros((2, seconds * RATE), np.float32)
        _, source = run_live(model, audio, 256, EngineSettings(device="cpu"))
        peaks.append(source.peak_ring)
    assert peaks[0] == peaks[1] < 10 * recipe.segment_samples
