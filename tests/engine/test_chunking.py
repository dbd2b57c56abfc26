"""The engine against the reference chunking algorithms, on a position-dependent toy.

Demucs: the real `demucs.apply.apply_model`. MSST: a line-by-line re-statement of
`demix` (utils/model_utils.py), since MSST is not installable.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_models import PositionalToy

from stemsplit.engine.chunking import OverlapAdd, fade_window, plan_chunks, triangle_window
from stemsplit.engine.runner import EngineSettings, separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.models.base import Recipe

SR = 100


def _engine(model, audio, **kwargs) -> np.ndarray:
    source = ArraySource(audio, model.samplerate)
    blocks = list(separate_stream(model, source, EngineSettings(**kwargs)))
    return np.concatenate(blocks, axis=-1)


def msst_demix(model, mix: torch.Tensor, chunk_size: int, num_overlap: int, batch_size: int):
    """MSST's generic-mode demix, restated (fade windows, reflect border, nan_to_num)."""
    fade_size = chunk_size // 10
    step = chunk_size // num_overlap
    border = chunk_size - step
    length_init = mix.shape[-1]
    fadein = torch.linspace(0, 1, fade_size)
    fadeout = torch.linspace(1, 0, fade_size)
    windowing_array = torch.ones(chunk_size)
    windowing_array[-fade_size:] = fadeout
    windowing_array[:fade_size] = fadein
    if length_init > 2 * border and border > 0:
        mix = torch.nn.functional.pad(mix, (border, border), mode="reflect")
    num_instruments = len(model.sources)
    result = torch.zeros((num_instruments,) + mix.shape)
    counter = torch.zeros((num_instruments,) + mix.shape)
    i = 0
    batch_data, batch_locations = [], []
    with torch.inference_mode():
        while i < mix.shape[1]:
            part = mix[:, i : i + chunk_size]
            chunk_len = part.shape[-1]
            pad_mode = "reflect" if chunk_len > chunk_size // 2 else "constant"
            part = torch.nn.functional.pad(part, (0, chunk_size - chunk_len), mode=pad_mode, value=0)
            batch_data.append(part)
            batch_locations.append((i, chunk_len))
            i += step
            if len(batch_data) >= batch_size or i >= mix.shape[1]:
                x = model(torch.stack(batch_data, dim=0))
                window = windowing_array.clone()
                if i - step == 0:
                    window[:fade_size] = 1
                elif i >= mix.shape[1]:
                    window[-fade_size:] = 1
                for j, (start, seg_len) in enumerate(batch_locations):
                    result[..., start : start + seg_len] += x[j, ..., :seg_len] * window[..., :seg_len]
                    counter[..., start : start + seg_len] += window[..., :seg_len]
                batch_data.clear()
                batch_locations.clear()
    out = (result / counter).numpy()
    np.nan_to_num(out, copy=False, nan=0.0)
    if length_init > 2 * border and border > 0:
        out = out[..., border:-border]
    return out


def _music(length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, length)).astype(np.float32) * 0.3


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(1, 700),
    segment=st.integers(8, 120),
    overlap=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75]),
    batch=st.integers(1, 4),
    pad_extra=st.integers(0, 9),
)
def test_demucs_apply_model_parity(length, segment, overlap, batch, pad_extra):
    apply = pytest.importorskip("demucs.apply")
    recipe = Recipe(segment, overlap, "triangle", "context", "none", batch)
    model = PositionalToy(SR, recipe, pad_to=segment + pad_extra)
    audio = _music(length)
    ours = _engine(model, audio)
    with torch.no_grad():
        ref = apply.apply_model(
            model, torch.from_numpy(audio)[None], shifts=0, split=True, overlap=overlap,
            segment=None, progress=False,
        )[0].numpy()
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


@settings(max_examples=80, deadline=None)
@given(
    length=st.integers(1, 700),
    segment=st.integers(10, 120),
    num_overlap=st.integers(1, 4),
    batch=st.integers(1, 4),
)
def test_msst_demix_parity(length, segment, num_overlap, batch):
    """Including MSST's one window per batch (a lone first-and-last chunk keeps its
    fade-out; with batch > 1 the last batch's chunks all lose theirs)."""
    recipe = Recipe(segment, 1 - 1 / num_overlap, "fade", "reflect-border", "none", batch)
    model = PositionalToy(SR, recipe)
    audio = _music(length, seed=1)
    ours = _engine(model, audio)
    ref = msst_demix(model, torch.from_numpy(audio), segment, num_overlap, batch_size=batch)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_msst_batch_size_is_part_of_the_recipe():
    """MSST's per-batch windows make batch 1 and 4 differ; each matches MSST at its own."""
    recipe = Recipe(100, 0.5, "fade", "reflect-border", "none", 1)
    model = PositionalToy(SR, recipe)
    audio = _music(700, seed=3)
    one, four = (_engine(model, audio, batch_size=size) for size in (1, 4))
    assert np.abs(one - four).max() > 1e-3
    ref = msst_demix(model, torch.from_numpy(audio), 100, 2, batch_size=4)
    np.testing.assert_allclose(four, ref, atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(1, 500),
    window=st.sampled_from(["triangle", "uniform"]),
    batch=st.integers(2, 5),
)
def test_batch_size_never_changes_demucs_output(length, window, batch):
    padding = "context" if window == "triangle" else "zeros"
    one = Recipe(50, 0.5, window, padding, "none", 1)
    model = PositionalToy(SR, one, pad_to=56 if window == "triangle" else None)
    audio = _music(length, seed=2)
    base = _engine(model, audio, batch_size=1)
    batched = _engine(model, audio, batch_size=batch)
    np.testing.assert_array_equal(base, batched)


def test_identity_overlap_add_reconstructs_input():
    class Identity(PositionalToy):
        sources = ["same"]

        def forward(self, mix):
            return mix[:, None]

    for window, padding in [("triangle", "context"), ("fade", "reflect-border")]:
        model = Identity(SR, Recipe(64, 0.5, window, padding, "none", 3))
        audio = _music(1000, seed=3)
        out = _engine(model, audio)
        np.testing.assert_allclose(out[0], audio, atol=1e-6)


def test_shifts_are_seeded_and_average_passes():
    recipe = Recipe(40, 0.25, "triangle", "context", "none", 1)
    model = PositionalToy(SR, recipe, pad_to=40)
    audio = _music(300, seed=4)
    a = _engine(model, audio, shifts=2, seed=7)
    b = _engine(model, audio, shifts=2, seed=7)
    c = _engine(model, audio, shifts=2, seed=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 2, 300)
    assert not np.array_equal(a, c)


def test_tta_equals_mean_of_three_demixes():
    recipe = Recipe(60, 0.5, "fade", "reflect-border", "none", 1)
    model = PositionalToy(SR, recipe)
    audio = _music(400, seed=5)
    tta = _engine(model, audio, tta=True)
    plain = _engine(model, audio)
    swapped = _engine(model, audio[::-1].copy())[:, ::-1]
    inverted = _engine(model, -audio)
    np.testing.assert_allclose(tta, (plain + swapped - inverted) / 3, atol=1e-6)


def test_overlap_add_releases_only_finished_samples():
    ola = OverlapAdd(1, 1, 10)
    ola.add(0, np.ones((1, 1, 6), np.float32), np.ones(6, np.float32))
    first = ola.release(4)
    assert first.shape[-1] == 4
    with pytest.raises(ValueError):
        ola.add(2, np.ones((1, 1, 2), np.float32), np.ones(2, np.float32))


def test_windows_match_references():
    w = triangle_window(7)
    ref = torch.cat([torch.arange(1, 4), torch.arange(4, 0, -1)])
    np.testing.assert_array_equal(w, (ref / ref.max()).numpy())
    f = fade_window(100, first=False, last=False)
    np.testing.assert_allclose(f[:10], torch.linspace(0, 1, 10).numpy(), atol=1e-7)
    assert f[10:90].min() == 1 and f[-1] == 0
    assert plan_chunks(5, Recipe(10, 0.5, "fade", "reflect-border", "none"), 10).border == 0
