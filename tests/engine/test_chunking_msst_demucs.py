"""The engine's "zeros" padding and "uniform" window against MSST's demix in 'demucs' mode.

MSST (utils/model_utils.py::demix, model_type 'htdemucs'): chunk = samplerate *
segment, step = chunk // num_overlap, chunks from 0 while i < length, each
`mix[:, i:i + chunk]` zero-padded to chunk, outputs summed (weight 1) and divided by
the count. Restated line by line below (MSST is not installable), against a
position-dependent toy network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from toy_models import PositionalToy

from stemsplit.engine.chunking import batch_windows, plan_chunks
from stemsplit.engine.runner import EngineSettings, separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.models.base import Recipe

SR = 100


def msst_demix_demucs(
    model, mix: torch.Tensor, chunk_size: int, num_overlap: int, batch_size: int
) -> np.ndarray:
    """MSST's 'demucs' mode, restated."""
    step = chunk_size // num_overlap
    result = torch.zeros((len(model.sources),) + tuple(mix.shape))
    counter = torch.zeros_like(result)
    i, batch, where = 0, [], []
    with torch.inference_mode():
        while i < mix.shape[1]:
            part = mix[:, i : i + chunk_size]
            length = part.shape[-1]
            batch.append(torch.nn.functional.pad(part, (0, chunk_size - length)))
            where.append((i, length))
            i += step
            if len(batch) >= batch_size or i >= mix.shape[1]:
                out = model(torch.stack(batch))
                for j, (start, seg_len) in enumerate(where):
                    result[..., start : start + seg_len] += out[j, ..., :seg_len]
                    counter[..., start : start + seg_len] += 1.0
                batch.clear()
                where.clear()
    return np.nan_to_num((result / counter).numpy())


def _recipe(segment: int, num_overlap: int, batch_size: int = 1) -> Recipe:
    return Recipe(segment, 1 - 1 / num_overlap, "uniform", "zeros", "none", batch_size)


@pytest.mark.parametrize(
    ("length", "segment", "num_overlap", "batch_size"),
    [(1000, 100, 2, 1), (1037, 100, 4, 3), (99, 100, 2, 1), (100, 100, 1, 1),
     (251, 60, 3, 2), (1, 50, 2, 1), (777, 128, 8, 4)],
)  # fmt: skip
def test_engine_equals_msst_demucs_mode(length, segment, num_overlap, batch_size):
    rng = np.random.default_rng(length)
    audio = rng.standard_normal((2, length)).astype(np.float32)
    model = PositionalToy(SR, _recipe(segment, num_overlap, batch_size)).eval()
    expected = msst_demix_demucs(model, torch.from_numpy(audio), segment, num_overlap, batch_size)
    source = ArraySource(audio, SR)
    actual = np.concatenate(list(separate_stream(model, source, EngineSettings())), axis=-1)
    assert actual.shape == expected.shape == (2, 2, length)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_plan_reads_whole_segments_from_each_start():
    plan = plan_chunks(250, _recipe(100, 2), 100)
    assert [c.start for c in plan.chunks] == [0, 50, 100, 150, 200]
    assert [c.length for c in plan.chunks] == [100, 100, 100, 100, 50]
    assert all(c.read_stop - c.read_start == 100 and c.trim == 0 for c in plan.chunks)
    assert plan.border == 0 and plan.padded_length == 250
    assert plan.padding == "context"  # read as a window of the track, zeros outside
    last = plan.chunks[-1]
    (window,) = batch_windows(plan, [last])
    assert (window == 1).all() and window.shape == (50,)


def test_segment_override_keeps_the_kind():
    """--segment / --overlap overrides keep MSST's step = segment // num_overlap."""
    audio = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32)
    model = PositionalToy(SR, _recipe(100, 2)).eval()
    expected = msst_demix_demucs(model, torch.from_numpy(audio), 80, 4, 1)
    actual = np.concatenate(list(separate_stream(
        model, ArraySource(audio, SR), EngineSettings(segment_seconds=0.8, overlap=0.75)
    )), axis=-1)  # fmt: skip
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
