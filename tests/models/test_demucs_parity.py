"""Demucs family (HTDemucs, HDemucs): parity with the demucs 4.1 package on real music.

demucs' model is built with a fixed seed and random weights, its state_dict is loaded
into ours with strict=True, and both run in fp32 eval mode on the MUSDB sample.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
import torch
from carried import music

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe, SeparationModel
from stemsplit.models.demucs import build_demucs

pytest.importorskip("demucs")
from demucs.demucs import Demucs as RefDemucs
from demucs.hdemucs import HDemucs as RefHDemucs
from demucs.htdemucs import HTDemucs as RefHTDemucs

SOURCES = ["drums", "bass", "other", "vocals"]
TOLERANCE = 1e-4

# Released htdemucs (demucs remote/htdemucs.yaml -> 955717e8): everything not listed
# is the class default.
HTDEMUCS = {
    "sources": SOURCES,
    "channels": 48,
    "growth": 2,
    "nfft": 4096,
    "cac": True,
    "depth": 4,
    "kernel_size": 8,
    "stride": 4,
    "context": 1,
    "context_enc": 0,
    "norm_starts": 4,
    "dconv_mode": 3,
    "dconv_depth": 2,
    "dconv_comp": 8,
    "dconv_init": 1e-3,
    "freq_emb": 0.2,
    "emb_scale": 10,
    "bottom_channels": 512,
    "t_layers": 5,
    "t_heads": 8,
    "t_hidden_scale": 4.0,
    "t_emb": "sin",
    "t_norm_in": True,
    "t_norm_first": True,
    "t_norm_out": True,
    "t_layer_scale": True,
    "t_gelu": True,
    "t_cross_first": False,
    "samplerate": 44100,
    "segment": Fraction(39, 5),
}
HTDEMUCS_6S = {**HTDEMUCS, "sources": [*SOURCES, "guitar", "piano"], "bottom_channels": 0}
# hdemucs_mmi: demucs conf/config.yaml `hdemucs:` section, segment 4 * 11 s.
HDEMUCS_MMI = {
    "sources": SOURCES,
    "channels": 48,
    "growth": 2,
    "nfft": 4096,
    "wiener_iters": 0,
    "end_iters": 0,
    "cac": True,
    "depth": 6,
    "hybrid": True,
    "hybrid_old": False,
    "multi_freqs": [],
    "multi_freqs_depth": 3,
    "freq_emb": 0.2,
    "emb_scale": 10,
    "kernel_size": 8,
    "stride": 4,
    "time_stride": 2,
    "context": 1,
    "context_enc": 0,
    "norm_starts": 4,
    "norm_groups": 4,
    "dconv_mode": 1,
    "dconv_depth": 2,
    "dconv_comp": 4,
    "dconv_attn": 4,
    "dconv_lstm": 4,
    "dconv_init": 1e-3,
    "samplerate": 44100,
    "segment": 44,
}


@pytest.fixture(scope="module")
def mixture() -> torch.Tensor:
    """Real music, `[1, 2, T]` float32: the carried 3 s MUSDB clip looped to 6.8 s."""
    return torch.from_numpy(music(300_032).T.copy())[None]


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def _reference(klass: type, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return klass(**kwargs).eval()


def _port(reference: torch.nn.Module) -> torch.nn.Module:
    """Ours, built as a checkpoint would rebuild it (serialize_model's args/kwargs)."""
    args, kwargs = reference._init_args_kwargs
    model = build_demucs(type(reference).__name__, args, kwargs)
    model.load_state_dict(reference.state_dict(), strict=True)
    return model


def _crop_or_pad(mix: torch.Tensor, start: int, length: int) -> torch.Tensor:
    chunk = mix[..., start : start + length]
    return torch.nn.functional.pad(chunk, (0, length - chunk.shape[-1]))


def _assert_parity(reference, model, mix: torch.Tensor) -> None:
    with torch.no_grad():
        expected = reference(mix)
        actual = model(mix)
    assert actual.shape == expected.shape == (mix.shape[0], len(model.sources), 2, mix.shape[-1])
    assert expected.abs().max() > 1e-3  # a real signal, not an all-zero comparison
    error = (actual - expected).abs().max().item()
    assert error <= TOLERANCE, f"max abs error {error:.3g}"


def test_htdemucs_released_parity(mixture: torch.Tensor) -> None:
    reference = _reference(RefHTDemucs, **HTDEMUCS)
    model = _port(reference)
    assert sum(p.numel() for p in model.parameters()) == 41_984_456
    assert model.valid_length(1000) == 343_980
    # One full training segment (the track padded to 7.8 s), then a shorter input that
    # exercises the internal zero-padding and crop.
    _assert_parity(reference, model, _crop_or_pad(mixture, 0, 343_980))
    _assert_parity(reference, model, _crop_or_pad(mixture, 123_456, 100_000))


def test_htdemucs_6s_parity(mixture: torch.Tensor) -> None:
    reference = _reference(RefHTDemucs, **HTDEMUCS_6S)
    model = _port(reference)
    assert model.sources == HTDEMUCS_6S["sources"]
    _assert_parity(reference, model, _crop_or_pad(mixture, 44_100, 200_000))


def test_hdemucs_mmi_parity(mixture: torch.Tensor) -> None:
    reference = _reference(RefHDemucs, **HDEMUCS_MMI)
    model = _port(reference)
    # Longer than the LSTM's 200-step frames at the bottom, odd length.
    _assert_parity(reference, model, _crop_or_pad(mixture, 0, 300_001))
    _assert_parity(reference, model, _crop_or_pad(mixture, 1_000, 20_000))


SMALL_HT = {"sources": SOURCES, "channels": 8, "segment": Fraction(2), "t_heads": 4}


@pytest.mark.parametrize(
    ("klass", "kwargs", "length"),
    [
        (RefHTDemucs, {**SMALL_HT, "bottom_channels": 32, "t_layers": 3}, 88_200),
        (RefHTDemucs, {**SMALL_HT, "t_emb": "cape", "t_norm_first": False,
                       "t_cross_first": True, "t_layer_scale": False}, 60_000),
        (RefHTDemucs, {**SMALL_HT, "t_emb": "scaled", "t_norm_in": False,
                       "t_norm_in_group": True, "t_group_norm": True, "t_gelu": False}, 60_000),
        (RefHTDemucs, {**SMALL_HT, "t_layers": 0, "dconv_mode": 2}, 1_234),
        (RefHDemucs, {"sources": SOURCES, "channels": 8, "multi_freqs": [0.25, 0.5],
                      "hybrid_old": True}, 60_000),
        (RefHDemucs, {"sources": SOURCES, "channels": 8, "multi_freqs": [0.3],
                      "multi_freqs_depth": 3, "dconv_mode": 3}, 60_001),
        (RefHDemucs, {"sources": SOURCES, "channels": 8, "hybrid": False, "cac": False,
                      "wiener_iters": -1, "end_iters": -1}, 60_000),
        (RefHDemucs, {"sources": ["vocals"], "channels": 8, "depth": 5}, 30_000),
    ],
)  # fmt: skip
def test_reduced_variants_parity(mixture: torch.Tensor, klass, kwargs, length) -> None:
    reference = _reference(klass, seed=1, **kwargs)
    _assert_parity(reference, _port(reference), _crop_or_pad(mixture, 50_000, length))


@pytest.mark.parametrize(
    ("kwargs", "length"),
    [
        ({}, 88_207),  # demucs' defaults: 64 channels, depth 6, BLSTM + LocalState at 4, 5
        ({"normalize": False, "channels": 16, "lstm_layers": 1, "dconv_mode": 3,
          "glu": False, "gelu": False}, 30_000),
        ({"channels": 16, "resample": False, "depth": 5, "rewrite": False}, 30_001),
    ],
)  # fmt: skip
def test_time_demucs_parity(mixture: torch.Tensor, kwargs, length) -> None:
    reference = _reference(RefDemucs, seed=2, sources=SOURCES, **kwargs)
    model = _port(reference)
    _assert_parity(reference, model, _crop_or_pad(mixture, 1_000, length))
    for n in (1, 100, 12_345, 44_100, 343_980):
        assert model.valid_length(n) == reference.valid_length(n)


def test_time_demucs_loads_legacy_keys() -> None:
    """Older checkpoints had the rewrite conv at index 2 (demucs' load_state_dict fix)."""
    reference = _reference(RefDemucs, sources=SOURCES, channels=8, depth=3, dconv_mode=0)
    state = reference.state_dict()
    legacy = {}
    for key, value in state.items():
        part, idx, pos, name = key.split(".")
        legacy[f"{part}.{idx}.{2 if pos == '3' else pos}.{name}"] = value
    assert legacy.keys() != state.keys()
    model = build_demucs("Demucs", (), {"sources": SOURCES, "channels": 8, "depth": 3,
                                       "dconv_mode": 0})  # fmt: skip
    model.load_state_dict(legacy, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_valid_length_matches_demucs() -> None:
    reference = _reference(RefHTDemucs, **SMALL_HT)
    model = _port(reference)
    for length in (1, 4_096, 50_000, 88_199, 88_200):
        assert model.valid_length(length) == reference.valid_length(length) == 88_200
    with pytest.raises(ValueError):
        reference.valid_length(88_201)
    with pytest.raises(ValueError, match="longer than the training segment"):
        model.valid_length(88_201)
    untrained = build_demucs("HTDemucs", (), {**SMALL_HT, "use_train_segment": False})
    assert untrained.valid_length(12_345) == 12_345
    # demucs' HDemucs has no valid_length: apply_model then pads chunks to their own
    # length (any length works); ours says so explicitly.
    hybrid = _port(_reference(RefHDemucs, sources=SOURCES, channels=8))
    assert not hasattr(RefHDemucs, "valid_length")
    for length in (1, 1_000, 44_101):
        assert hybrid.valid_length(length) == length


@pytest.mark.parametrize("segment", [Fraction(39, 5), 7.8, 44])
def test_build_protocol_and_recipe(segment) -> None:
    model = build_demucs("HTDemucs", [], {**SMALL_HT, "segment": segment})
    assert isinstance(model, SeparationModel)
    assert not model.training
    assert model.sources == SOURCES and model.samplerate == 44100
    assert model.audio_channels == 2 and model.residual is None
    assert model.recipe == Recipe(
        segment_samples=int(segment * 44100),
        overlap=0.25,
        window="triangle",
        padding="context",
        normalization="track-mean-std",
        batch_size=1,
    )
    hybrid = build_demucs("HDemucs", (SOURCES,), {"channels": 8, "segment": segment})
    assert hybrid.recipe.segment_samples == int(segment * 44100)
    hybrid.segment = 44  # a bag's override (mdx_extra.yaml: segment 44)
    assert hybrid.recipe.segment_samples == 44 * 44100


def test_build_errors() -> None:
    with pytest.raises(ModelError, match="unknown Demucs model class"):
        build_demucs("Wave2Vec", (), {"sources": SOURCES})
    with pytest.raises(ModelError, match="cannot build HTDemucs"):
        build_demucs("HTDemucs", (), {"sources": SOURCES, "no_such_option": 1})
    with pytest.raises(ModelError, match="not supported"):
        build_demucs("HTDemucs", (), {"sources": SOURCES, "t_sparse_self_attn": True})
    with pytest.raises(ModelError, match="not supported"):
        build_demucs("HDemucs", (), {"sources": SOURCES, "cac": False, "wiener_iters": 1,
                                     "end_iters": 1})  # fmt: skip


def test_does_not_import_demucs_package() -> None:
    code = (
        "import sys, stemsplit.models.demucs as d\n"
        "d.build_demucs('HTDemucs', (), {'sources': ['a'], 'channels': 8})\n"
        "d.build_demucs('HDemucs', (), {'sources': ['a'], 'channels': 8})\n"
        "assert not any(m == 'demucs' or m.startswith('demucs.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
