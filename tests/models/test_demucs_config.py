"""Demucs configs: demucs 4.1's keyword names and defaults, nested parts, checked values."""

from __future__ import annotations

import dataclasses
import inspect
from fractions import Fraction

import pytest

from stemsplit.errors import ModelError
from stemsplit.models.demucs import build_demucs, build_network, demucs_config
from stemsplit.models.demucs.config import DConvConfig, DemucsConfig
from stemsplit.models.demucs.hybrid_config import HDemucsConfig, HTDemucsConfig

pytest.importorskip("demucs")
from demucs.demucs import Demucs as RefDemucs
from demucs.hdemucs import HDemucs as RefHDemucs
from demucs.htdemucs import HTDemucs as RefHTDemucs

SOURCES = ["drums", "bass", "other", "vocals"]
PAIRS = [(RefHTDemucs, HTDemucsConfig), (RefHDemucs, HDemucsConfig), (RefDemucs, DemucsConfig)]
IDS = ["HTDemucs", "HDemucs", "Demucs"]


@pytest.mark.parametrize(("reference", "config_class"), PAIRS, ids=IDS)
def test_keywords_and_defaults_are_demucs(reference, config_class) -> None:
    """A drift of demucs' signature (a name, its order or a default) fails here."""
    parameters = inspect.signature(reference).parameters
    assert config_class.KWARGS == tuple(parameters)
    ours = config_class.from_kwargs({"sources": SOURCES}).to_kwargs()
    theirs = {name: p.default for name, p in parameters.items() if name != "sources"}
    assert {name: value for name, value in ours.items() if name != "sources"} == theirs
    assert config_class.KLASS == reference.__name__


@pytest.mark.parametrize(("reference", "config_class"), PAIRS, ids=IDS)
def test_default_network_has_demucs_state(reference, config_class) -> None:
    """demucs' network and ours from the same (otherwise default) keywords agree."""
    kwargs = {"sources": SOURCES, "channels": 8}  # narrow: the defaults build 40-300 M
    state = reference(**kwargs).state_dict()
    ours = build_network(config_class.from_kwargs(kwargs)).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in state.items()}


def test_nested_parts() -> None:
    config = HTDemucsConfig.from_kwargs(
        {"sources": SOURCES, "dconv_comp": 4, "t_heads": 4, "t_layers": 2, "multi_freqs": [],
         "t_sparse_attn_window": 400, "segment": Fraction(39, 5)}
    )  # fmt: skip
    assert config.dconv == DConvConfig(compress=4, init=1e-3)  # HTDemucs' other defaults
    assert (config.transformer.heads, config.transformer.layers) == (4, 2)
    assert config.transformer.sparse.attn_window == 400
    assert config.sources == tuple(SOURCES) and config.multi_freqs == ()
    assert config.segment == Fraction(39, 5)
    assert HDemucsConfig.from_kwargs({"sources": SOURCES}).dconv == DConvConfig(attn=4, lstm=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.channels = 8  # type: ignore[misc]
    # to_kwargs round-trips, positional arguments follow demucs' order
    assert HTDemucsConfig.from_kwargs(config.to_kwargs()) == config
    assert HDemucsConfig.from_call((SOURCES, 1), {"channels": 8}).audio_channels == 1


@pytest.mark.parametrize("config_class", [HTDemucsConfig, HDemucsConfig, DemucsConfig])
def test_unknown_keywords_are_named(config_class) -> None:
    with pytest.raises(ModelError, match="unknown keyword arguments 'no_such', 'bogus'"):
        config_class.from_kwargs({"sources": SOURCES, "no_such": 1, "bogus": 2})
    with pytest.raises(ModelError, match="'sources' argument is required|`sources`"):
        config_class.from_kwargs({"channels": 8})


def test_class_specific_keywords() -> None:
    with pytest.raises(ModelError, match="'t_layers'"):
        HDemucsConfig.from_kwargs({"sources": SOURCES, "t_layers": 1})
    with pytest.raises(ModelError, match="'hybrid'"):
        HTDemucsConfig.from_kwargs({"sources": SOURCES, "hybrid": False})
    with pytest.raises(ModelError, match="'dconv_attn'"):
        HTDemucsConfig.from_kwargs({"sources": SOURCES, "dconv_attn": 2})
    with pytest.raises(ModelError, match="given twice"):
        HDemucsConfig.from_call((SOURCES,), {"sources": SOURCES})


@pytest.mark.parametrize(
    ("klass", "change", "message"),
    [
        ("HTDemucs", {"channels": 0}, "channels must be positive"),
        ("HTDemucs", {"channels": "48"}, "channels must be int"),
        ("HTDemucs", {"depth": 4.5}, "depth must be int"),
        ("HTDemucs", {"segment": -1}, "segment must be positive"),
        ("HTDemucs", {"sources": []}, "at least one stem"),
        ("HTDemucs", {"t_emb": "rope"}, "unknown emb"),
        ("HTDemucs", {"t_heads": 5}, "not divisible by 5 heads"),
        ("HTDemucs", {"t_sparse_cross_attn": True}, "not supported"),
        ("HTDemucs", {"wiener_iters": 1}, "wiener_iters == end_iters"),
        ("HDemucs", {"cac": False}, "not supported"),
        ("HDemucs", {"hybrid": False, "hybrid_old": True}, "hybrid_old needs hybrid"),
        ("HDemucs", {"dconv_mode": 4}, "mode must be 0 to 3"),
        ("HDemucs", {"multi_freqs": [0.5, 1.5]}, "multi_freqs"),
        ("Demucs", {"dconv_comp": 0}, "compress must be positive"),
        ("Demucs", {"lstm_layers": -1}, "lstm_layers"),
    ],
)
def test_values_are_checked(klass: str, change: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        demucs_config(klass, (), {"sources": SOURCES, **change})
    with pytest.raises(ModelError, match=f"cannot build {klass}"):
        build_demucs(klass, (), {"sources": SOURCES, **change})


def test_flags_accept_demucs_group_counts() -> None:
    """demucs turns t_norm_in_group / t_group_norm into group counts with int()."""
    config = HTDemucsConfig.from_kwargs({"sources": SOURCES, "t_group_norm": 1})
    assert config.transformer.group_norm == 1
