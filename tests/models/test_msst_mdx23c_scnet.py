"""MSST-format MDX23C (TFC-TDF v3) and SCNet against MSST's own outputs (commit ccc011a).

Fixtures: the held-out ones under tests/data/msst/ (one-target vocals with a residual,
BatchNorm/GroupNorm, relu/elu, mono 22.05 kHz, num_overlap 3 and 4,
`inference.normalize`, the masked SCNet; written by tools/msst_fixtures_mdx23c_scnet.py
from MSST's public code), and {mdx23c,scnet} when a STEMSPLIT_FIXTURES folder
(../shared/fixtures) has them. Each is checked
three ways: the network's forward on the first chunk, demix through the engine, and
the real CLI (`python -m stemsplit MIX --checkpoint --config`), the architecture
recognised from the files alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from msst_fixture import check_cli, check_demix, check_forward, extra, fixture_folder, held_out
from msst_fixture import read_meta as _meta

from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.models.mdx23c import build_mdx23c
from stemsplit.models.scnet import build_scnet
from stemsplit.zoo import catalog, checkpoints
from stemsplit.zoo.loader import ModelBundle, load_bundle
from stemsplit.zoo.safe_yaml import load_yaml

MODEL_TYPES = ("mdx23c", "scnet", "scnet_masked")
FORWARD_DB = 90.0
DEMIX_DB = 90.0
CLI_DB = 80.0

HELD_OUT = held_out(MODEL_TYPES)
ALL = extra(["mdx23c", "scnet"]) + HELD_OUT
CLI_CASES = ALL  # mono models too: the input is decoded at the model's channel count


def _bundle(folder: Path) -> ModelBundle:
    return load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml")


@pytest.mark.parametrize("name", ALL)
def test_recognised_from_the_files(name: str) -> None:
    folder = fixture_folder(name)
    model_type = _meta(folder)["model_type"]
    config = load_yaml(folder / "config.yaml")
    # the masked SCNet shares scnet's yaml keys; its weights tell it apart
    assert checkpoints.msst_architecture(config).name == model_type.replace("_masked", "")
    state = checkpoints.read_state_dict(folder / "model.ckpt")
    by_state = registry.recognise_state(state)
    assert (by_state.name if by_state else None) == (
        model_type if model_type == "scnet_masked" else None
    )
    model = _bundle(folder).members[0]
    assert getattr(model.config, "masked", False) == (model_type == "scnet_masked")


@pytest.mark.parametrize("name", ALL)
def test_forward_matches_msst(name: str) -> None:
    folder = fixture_folder(name)
    check_forward(folder, _bundle(folder).members[0], FORWARD_DB)


@pytest.mark.parametrize("name", ALL)
def test_demix_through_the_engine_matches_msst(name: str) -> None:
    folder = fixture_folder(name)
    check_demix(folder, _bundle(folder), DEMIX_DB)


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_reproduces_msst_demix(name: str, tmp_path: Path) -> None:
    check_cli(fixture_folder(name), tmp_path, CLI_DB)


# ------------------------------------------------------------ configs and cards


def _tiny_scnet(**changes: object) -> dict:
    model = {"sources": ["drums", "bass"], "audio_channels": 2, "dims": [4, 8],
             "nfft": 512, "hop_size": 128, "win_size": 512, "num_dplayer": 2, **changes}  # fmt: skip
    return {"audio": {"chunk_size": 8192, "num_channels": 2}, "model": model,
            "training": {"instruments": ["drums", "bass"]}, "inference": {"num_overlap": 2}}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dims": [2, 8]}, "2 x audio_channels"),
        ({"num_dplayer": 3}, "even"),
        ({"band_SR": [0.5, 0.5]}, "three values"),
        ({"flash": True}, "unknown model keys"),
        ({"sources": ["drums"]}, "must match"),
    ],
)
def test_bad_scnet_configs_are_model_errors(changes: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_scnet("scnet", _tiny_scnet(**changes))


def test_scnet_any_length_and_batch() -> None:
    model = build_scnet("scnet", _tiny_scnet()).eval()
    with torch.inference_mode():
        for length in (1000, 1024, 4097):
            assert model(torch.randn(2, 2, length)).shape == (2, 2, 2, length)


def test_mdx23c_pads_lengths_its_u_net_cannot_take() -> None:
    config = {
        "audio": {"chunk_size": 7936, "dim_f": 64, "hop_length": 128, "n_fft": 256,
                  "num_channels": 2},
        "model": {"act": "gelu", "bottleneck_factor": 2, "growth": 2, "norm": "InstanceNorm",
                  "num_blocks_per_scale": 1, "num_channels": 4, "num_scales": 2,
                  "num_subbands": 2, "scale": [2, 2]},
        "training": {"instruments": ["vocals", "other"]},
    }  # fmt: skip
    model = build_mdx23c("mdx23c", config).eval()
    assert model.recipe.segment_samples == 7936 and model.recipe.overlap == 0.5
    with torch.inference_mode():
        for length in (7936, 5000):
            assert model(torch.randn(1, 2, length)).shape == (1, 2, 2, length)
    with pytest.raises(ModelError, match="divide"):
        build_mdx23c("mdx23c", {**config, "audio": {**config["audio"], "dim_f": 60}})
    with pytest.raises(ModelError, match="model.act"):
        build_mdx23c("mdx23c", {**config, "model": {**config["model"], "act": "swish"}})


def test_markers_keep_other_configs_where_they_were() -> None:
    for path in sorted(catalog.weights_dir().joinpath("configs").glob("*.yaml")):
        config = load_yaml(path)
        found = registry.recognise_config(config)
        model = config.get("model")
        if isinstance(model, dict) and "freqs_per_bands" in model:
            assert found is not None and found.name == "bs_roformer", path.name
        elif isinstance(model, dict) and "num_bands" in model:
            assert found is not None and found.name == "mel_band_roformer", path.name


def test_msst_cards_agree_with_their_configs() -> None:
    cards = [c for c in catalog.list_cards() if c.architecture in MODEL_TYPES]
    assert {c.architecture for c in cards} == set(MODEL_TYPES)
    for card in cards:
        if card.config in {spec.name for spec in card.files}:
            continue  # downloaded with the checkpoint
        config = catalog.load_card_config(card)
        expected = card.architecture.replace("_masked", "")
        assert checkpoints.msst_architecture(config).name == expected, card.name
        build = build_mdx23c if card.architecture == "mdx23c" else build_scnet
        with torch.device("meta"):
            model = build(card.architecture, config)
        assert [s.lower() for s in model.sources] == list(card.sources), card.name
        assert model.residual == card.residual, card.name
        assert model.samplerate == card.samplerate, card.name
