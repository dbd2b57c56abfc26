"""MSST's `bandit` (BandIt v1, the network of BandIt Plus) against MSST's own outputs
(commit ccc011a).

Held-out fixtures under tests/data/msst/bandit_* (written by
tools/msst_fixtures_bandit.py from MSST's public code): BandIt Plus's configuration
made small (stereo 16 kHz, speech / music / effects, 24 overlapping musical bands with
float64 weights, bidirectional GRUs) and mono 44.1 kHz vocals / other with the fixed
vocal band layout, a unidirectional LSTM, LeakyReLU, real masks, `inference.normalize`
and STFT settings MSST ignores. Each is checked on the network's forward, on demix
through the engine and through the real CLI with the architecture recognised from the
files alone.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch
from msst_fixture import (
    check_cli,
    check_demix,
    check_forward,
    fixture_folder,
    held_out,
    load_fixture,
)

from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.models.bandit import Bandit, build_bandit, vocal_bands
from stemsplit.zoo import catalog, checkpoints
from stemsplit.zoo.safe_yaml import load_yaml

FORWARD_DB = 90.0
DEMIX_DB = 90.0
CLI_DB = 80.0
FIXTURES = held_out(["bandit"])


def _folder(name: str) -> Path:
    return fixture_folder(name)


def test_the_fixtures_are_there() -> None:
    assert len(FIXTURES) >= 2, FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_recognised_from_the_yaml(name: str) -> None:
    folder = _folder(name)
    assert checkpoints.msst_architecture(load_yaml(folder / "config.yaml")).name == "bandit"
    assert isinstance(load_fixture(folder).members[0], Bandit)


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_matches_msst(name: str) -> None:
    folder = _folder(name)
    check_forward(folder, load_fixture(folder, model_type="bandit").members[0], FORWARD_DB)


@pytest.mark.parametrize("name", FIXTURES)
def test_demix_through_the_engine_matches_msst(name: str) -> None:
    folder = _folder(name)
    check_demix(folder, load_fixture(folder), DEMIX_DB)


@pytest.mark.parametrize("name", FIXTURES)
def test_cli_without_model_type_reproduces_msst_demix(name: str, tmp_path: Path) -> None:
    check_cli(_folder(name), tmp_path, CLI_DB)


@pytest.mark.parametrize("name", FIXTURES)
def test_bands_and_weights_are_msst_own(name: str) -> None:
    """The band weights we compute equal the ones MSST saved (a strict load would hide a
    difference by overwriting ours); the keys are MSST's, one for one."""
    folder = _folder(name)
    state = checkpoints.read_state_dict(folder / "model.ckpt")
    model = build_bandit("bandit", load_yaml(folder / "config.yaml"))
    ours = model.state_dict()
    assert sorted(ours) == sorted(state)
    assert all(ours[key].shape == state[key].shape for key in state)
    weights = [key for key in state if "freq_weights/" in key]
    assert bool(weights) == (name == "bandit_dnr_small")
    for key in weights + ["stft.window", "istft.window"]:
        assert ours[key].dtype == state[key].dtype and torch.equal(ours[key], state[key]), key


# ------------------------------------------------------------ configs and cards


def _tiny(**changes: object) -> dict[str, Any]:
    model = {"in_channel": 1, "stems": ["speech", "music"], "band_specs": "musical",
             "n_bands": 8, "n_sqm_modules": 1, "emb_dim": 4, "rnn_dim": 4, "mlp_dim": 4,
             **changes}  # fmt: skip
    return {"audio": {"chunk_size": 8192, "num_channels": 2}, "model": model,
            "training": {"instruments": ["speech", "music"]}, "inference": {"num_overlap": 2}}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bogus": 1}, r"unknown model keys \['bogus'\]"),
        ({"in_channel": 2}, "mono"),
        ({"n_fft": 1024}, "n_fft must be 2048"),
        ({"band_specs": "dnr:mel"}, "not supported"),
        ({"band_specs": "bark48"}, "not supported"),
        ({"band_specs": "linear"}, "unknown band_specs"),
        ({"band_specs": [[0, 1025]]}, "name a band layout"),
        ({"n_bands": None}, "n_bands"),
        ({"mult_add_mask": True}, "mult_add_mask"),
        ({"cond_dim": 4}, "cond_dim"),
        ({"hidden_activation": "Linear"}, "hidden_activation"),
        ({"rnn_type": "Transformer"}, "rnn_type"),
        ({"stems": []}, "model.stems"),
        ({"stems": ["a", "b", "c"]}, "must match"),
    ],
)
def test_bad_configs_are_model_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_bandit("bandit", _tiny(**changes))


def test_missing_required_keys_and_coarse_vocal_layouts() -> None:
    config = _tiny()
    del config["model"]["band_specs"]
    with pytest.raises(ModelError, match="band_specs is required"):
        build_bandit("bandit", config)
    with pytest.raises(ModelError, match="40 kHz"):
        build_bandit("bandit", _tiny(band_specs="dnr:speech", fs=16000))


def test_the_stft_is_msst_fixed_one_whatever_the_config_says() -> None:
    plain = build_bandit("bandit", _tiny())
    odd = build_bandit("bandit", _tiny(win_length=1024, hop_length=256, window_fn="bartlett_window",
                                       normalized=False, pad_mode="reflect", power=2))  # fmt: skip
    odd.load_state_dict(plain.state_dict(), strict=True)
    mix = torch.randn(1, 2, 6000)
    with torch.inference_mode():
        assert torch.equal(plain(mix), odd(mix))
    assert plain.spectral.hop_length == 512 and plain.stft.window.shape == (2048,)


def test_vocal_layout_tiles_the_spectrum() -> None:
    specs = vocal_bands(2048, 44100)
    assert specs[0][0] == 0 and specs[-1][1] == 1025
    assert all(a[1] == b[0] for a, b in pairwise(specs))
    assert specs[:2] == [(0, 5), (5, 10)] and specs[-1] == (929, 1025)


def test_unused_weights_are_still_registered_as_msst_does() -> None:
    """use_freq_weights false: MSST keeps the buffers (they load strictly) but not the
    weighting."""
    model = build_bandit("bandit", _tiny(use_freq_weights=False))
    assert "bsrnn.mask_estim.music.freq_weights/0" in model.state_dict()
    assert not model.bsrnn.mask_estim["music"].use_freq_weights


def test_any_length_and_batch() -> None:
    model = build_bandit("bandit", _tiny())
    with torch.inference_mode():
        for length in (1000, 4097):
            out = model(torch.randn(2, 2, length))
            assert out.shape == (2, 2, 2, length) and bool(torch.isfinite(out).all())


def test_markers_tell_bandit_from_bandit_v2() -> None:
    config = _tiny()
    found = registry.recognise_config(config)
    assert found is not None and found.name == "bandit"
    v2 = {"kwargs": {"n_sqm_modules": 1, "stems": ["speech"]}, "model": {"in_channel": 1}}
    found = registry.recognise_config(v2)
    assert found is not None and found.name == "bandit_v2"


def test_the_card_agrees_with_its_config() -> None:
    (card,) = [c for c in catalog.list_cards() if c.architecture == "bandit"]
    config = catalog.load_card_config(card)
    assert config["augmentations"]["mixup_probs"] == (0.2, 0.02)  # !!python/tuple, safely
    assert checkpoints.msst_architecture(config).name == "bandit"
    with torch.device("meta"):
        model = build_bandit(card.architecture, config)
    assert [s.lower() for s in model.sources] == list(card.sources)
    assert model.residual == card.residual and model.samplerate == card.samplerate
    assert len(model.bsrnn.tf_model.seqband) == 16 and len(model.bsrnn.band_split.specs) == 64
    assert model.recipe.segment_samples == 264600 and model.recipe.overlap == 0.75
    assert card.quality["dataset"] == "DnR test" and card.quality["sdr"]["average"] == 11.50
