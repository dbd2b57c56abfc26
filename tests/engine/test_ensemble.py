"""Ensemble algorithms on signals whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stemsplit.audio.blocks import rechunk
from stemsplit.engine.ensemble import combine, combine_blocks, stem_weights
from stemsplit.engine.spectral import HOP, N_FFT, spectral_stream


def test_waveform_algorithms_by_hand():
    a = np.array([[0.5, -0.2, 0.1]], np.float32)
    b = np.array([[0.1, -0.6, 0.3]], np.float32)
    c = np.array([[0.2, 0.4, -0.9]], np.float32)
    np.testing.assert_allclose(combine([a, b], [1, 1], "avg"), [[0.3, -0.4, 0.2]], atol=1e-7)
    np.testing.assert_allclose(combine([a, b], [3, 1], "avg"), [[0.4, -0.3, 0.15]], atol=1e-7)
    np.testing.assert_allclose(combine([a, b, c], [1, 1, 1], "median"), [[0.2, -0.2, 0.1]])
    np.testing.assert_allclose(combine([a, b, c], [1, 1, 1], "max-mag"), [[0.5, -0.6, -0.9]])
    np.testing.assert_allclose(combine([a, b, c], [1, 1, 1], "min-mag"), [[0.1, -0.2, 0.1]])


def test_bag_weights_are_normalised_per_stem():
    blocks = [np.full((2, 1, 4), 1.0, np.float32), np.full((2, 1, 4), 3.0, np.float32)]
    matrix = stem_weights([[1.0, 0.0], [1.0, 1.0]], 2)
    out = combine_blocks(blocks, matrix)
    np.testing.assert_allclose(out[0], 2.0)  # mean of 1 and 3
    np.testing.assert_allclose(out[1], 3.0)  # only the second member votes


def _spectral(signals, algorithm, weights=None, block=777):
    stacked = np.stack(signals)  # [models, channels, n]
    weights = weights or [1.0] * len(signals)
    out = list(spectral_stream(rechunk(iter([stacked]), block), algorithm, weights))
    return np.concatenate(out, axis=-1)


@pytest.mark.parametrize("algorithm", ["avg-spec", "max-spec", "min-spec"])
@pytest.mark.parametrize("length", [1, 100, N_FFT, 5000, 5 * HOP + 3])
def test_spectral_of_identical_models_is_identity(algorithm, length):
    x = np.random.default_rng(length).standard_normal((2, length)).astype(np.float32)
    out = _spectral([x, x, x], algorithm)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_spectral_block_size_does_not_matter():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 2, 9000)).astype(np.float32)
    one = _spectral([a, b], "max-spec", block=9000)
    many = _spectral([a, b], "max-spec", block=313)
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_max_spec_keeps_the_louder_model_per_bin():
    t = np.arange(20000) / 44100
    low = np.sin(2 * np.pi * 440 * t)[None].astype(np.float32)
    high = 0.5 * np.sin(2 * np.pi * 5000 * t)[None].astype(np.float32)
    # model A has the 440 Hz tone loud and 5 kHz quiet; model B the other way round
    a = low + 0.1 * high
    b = 0.1 * low + high
    out = _spectral([a, b], "max-spec")
    expected = low + high
    inner = slice(N_FFT, -N_FFT)
    assert np.abs(out[:, inner] - expected[:, inner]).max() < 0.05
    out_min = _spectral([a, b], "min-spec")
    assert np.abs(out_min[:, inner] - 0.1 * expected[:, inner]).max() < 0.05
    avg = _spectral([a, b], "avg-spec")
    np.testing.assert_allclose(avg, (a + b) / 2, atol=1e-5)
