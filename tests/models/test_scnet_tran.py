"""MSST's `scnet_tran` (SCNet with transformer dual-path layers) against MSST's own
outputs (commit ccc011a).

Held-out fixtures under tests/data/msst/scnet_tran_* (written by
tools/msst_fixtures_mdx23c_scnet.py from MSST's public code): stereo drums+bass at
44.1 kHz (num_overlap 2, transformer depth 1, rotary as wide as the head) and mono
vocals-with-residual at 22.05 kHz (num_overlap 3, `inference.normalize`, depth 2, a
rotary embedding narrower than the head). Each is checked on the network's forward,
on demix through the engine and through the real CLI with the architecture
recognised from the files alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from msst_fixture import DATA, check_cli, check_demix, check_forward, held_out, load_fixture

from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.models.scnet_tran import SCNetTran, build_scnet_tran
from stemsplit.zoo import catalog, checkpoints
from stemsplit.zoo.safe_yaml import load_yaml

FORWARD_DB = 90.0
DEMIX_DB = 90.0
CLI_DB = 80.0
FIXTURES = held_out(["scnet_tran"])


def test_the_fixtures_are_there() -> None:
    assert len(FIXTURES) >= 2, FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_recognised_from_the_yaml_and_from_the_weights(name: str) -> None:
    folder = DATA / name
    assert checkpoints.msst_architecture(load_yaml(folder / "config.yaml")).name == "scnet_tran"
    found = registry.recognise_state(checkpoints.read_state_dict(folder / "model.ckpt"))
    assert found is not None and found.name == "scnet_tran"
    assert isinstance(load_fixture(folder).members[0], SCNetTran)


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_matches_msst(name: str) -> None:
    bundle = load_fixture(DATA / name, model_type="scnet_tran")
    check_forward(DATA / name, bundle.members[0], FORWARD_DB)


@pytest.mark.parametrize("name", FIXTURES)
def test_demix_through_the_engine_matches_msst(name: str) -> None:
    check_demix(DATA / name, load_fixture(DATA / name), DEMIX_DB)


@pytest.mark.parametrize("name", FIXTURES)
def test_cli_without_model_type_reproduces_msst_demix(name: str, tmp_path: Path) -> None:
    check_cli(DATA / name, tmp_path, CLI_DB)


def test_cli_with_model_type(tmp_path: Path) -> None:
    check_cli(DATA / FIXTURES[0], tmp_path, CLI_DB, "--model-type", "scnet_tran")


# ------------------------------------------------------------ configs and cards


def _tiny(**changes: object) -> dict[str, Any]:
    model = {"sources": ["drums", "bass"], "audio_channels": 2, "dims": [4, 8], "nfft": 512,
             "hop_size": 128, "win_size": 512, "num_dplayer": 2, "tran_depth": 1,
             "tran_heads": 2, "tran_dim_head": 8, "tran_rotary_embedding_dim": 8, **changes}  # fmt: skip
    return {"audio": {"chunk_size": 8192, "num_channels": 2}, "model": model,
            "training": {"instruments": ["drums", "bass"]}, "inference": {"num_overlap": 2}}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tran_flash": True}, r"unknown model keys \['tran_flash'\]"),
        ({"lstm_layers": 2}, "unknown model keys"),
        ({"tran_depth": 0}, "positive integers"),
        ({"tran_rotary_embedding_dim": 16}, "exceeds tran_dim_head"),
        ({"tran_dim_head": 7, "tran_rotary_embedding_dim": 4}, "even"),
        ({"tran_flash_attn": "yes"}, "true or false"),
        ({"num_dplayer": 3}, "even"),
    ],
)
def test_bad_configs_are_model_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_scnet_tran("scnet_tran", _tiny(**changes))


def test_any_length_and_batch() -> None:
    model = build_scnet_tran("scnet_tran", _tiny()).eval()
    with torch.inference_mode():
        for length in (1000, 1024, 4097):
            assert model(torch.randn(2, 2, length)).shape == (2, 2, 2, length)


def test_weights_tell_scnet_tran_from_a_yaml_without_tran_keys() -> None:
    """MSST's defaults let a yaml omit every `tran_*` key: the yaml then reads as scnet,
    and the state dict (tried first by the loader) says scnet_tran."""
    config = _tiny()
    state = build_scnet_tran("scnet_tran", config).state_dict()
    bare = {**config, "model": {k: v for k, v in config["model"].items()
                                if not k.startswith("tran_")}}  # fmt: skip
    bare["model"].update(band_SR=[0.175, 0.392, 0.433], band_stride=[1, 4, 16],
                         band_kernel=[3, 4, 16])  # fmt: skip
    by_config, by_state = registry.recognise_config(bare), registry.recognise_state(state)
    assert by_config is not None and by_config.name == "scnet"
    assert by_state is not None and by_state.name == "scnet_tran"


def test_the_card_agrees_with_its_config() -> None:
    (card,) = [c for c in catalog.list_cards() if c.architecture == "scnet_tran"]
    config = catalog.load_card_config(card)
    assert checkpoints.msst_architecture(config).name == "scnet_tran"
    with torch.device("meta"):
        model = build_scnet_tran(card.architecture, config)
    assert [s.lower() for s in model.sources] == list(card.sources)
    assert model.residual == card.residual and model.samplerate == card.samplerate
    assert model.tran.rotary_embedding_dim == 64 and model.config.num_dplayer == 6
