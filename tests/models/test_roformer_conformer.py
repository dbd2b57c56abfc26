"""MSST's conformer RoFormers (`bs_conformer`, `mel_band_conformer`) against MSST's code.

Fixtures under tests/data/msst/ were written by tools/msst_fixtures_conformer.py with
MSST's `models/bs_roformer/{bs,mel_band}_conformer.py` (commit ccc011a): a stereo
16 kHz BS-Conformer with two stems, a linear-attention transformer before each block
and skip connections, and a mono 22.05 kHz Mel-Band Conformer with one target (the
residual is written too). Each is checked three ways: the network's forward on the
first chunk, demix through the engine, and the real CLI with `--checkpoint --config`
and no `--model-type` (the architecture recognised from the yaml alone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from msst_fixture import DATA, check_cli, check_demix, held_out
from msst_fixture import read_audio as _read
from msst_fixture import read_meta as _meta
from parity import snr_db

from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.models.roformer.conformer import BSConformer, MelBandConformer
from stemsplit.zoo import checkpoints
from stemsplit.zoo.loader import ModelBundle, load_bundle
from stemsplit.zoo.safe_yaml import load_yaml

MODEL_TYPES = ("bs_conformer", "mel_band_conformer")
NAMES = held_out(MODEL_TYPES)
WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "configs"
PARITY_DB = 90.0


def _bundle(folder: Path, **options: str) -> ModelBundle:
    return load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml",
                       **options)  # fmt: skip


def test_both_architectures_have_fixtures() -> None:
    assert sorted(_meta(DATA / name)["model_type"] for name in NAMES) == sorted(MODEL_TYPES)


@pytest.mark.parametrize("name", NAMES)
def test_recognised_from_the_yaml_alone(name: str) -> None:
    folder = DATA / name
    model_type = _meta(folder)["model_type"]
    assert checkpoints.msst_architecture(load_yaml(folder / "config.yaml")).name == model_type
    assert registry.recognise_state(checkpoints.read_state_dict(folder / "model.ckpt")) is None
    (model,) = _bundle(folder).members  # strict state-dict load
    klass = BSConformer if model_type == "bs_conformer" else MelBandConformer
    assert type(model) is klass
    # --model-type names it too
    (named,) = _bundle(folder, model_type=model_type).members
    assert type(named) is klass


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_msst(name: str) -> None:
    folder = DATA / name
    meta = _meta(folder)
    (model,) = _bundle(folder).members
    assert list(model.sources) == meta["stems"]
    mix = _read(folder / "mixture.flac")
    chunk = meta["chunk_size"]
    with torch.inference_mode():
        out = model(torch.from_numpy(mix[:, :chunk].copy())[None]).numpy()
    assert out.shape == (1, len(meta["stems"]), mix.shape[0], chunk)
    # MSST drops the stem axis of a one-stem network
    expected = np.load(folder / "forward_output.npy").reshape(out.shape)
    assert snr_db(expected, out) >= PARITY_DB


@pytest.mark.parametrize("name", NAMES)
def test_demix_through_the_engine_matches_msst(name: str) -> None:
    check_demix(DATA / name, _bundle(DATA / name), PARITY_DB)


@pytest.mark.parametrize("name", NAMES)
def test_cli_reproduces_msst_demix(name: str, tmp_path: Path) -> None:
    check_cli(DATA / name, tmp_path, PARITY_DB)  # no --model-type: the yaml tells


def test_cli_takes_the_msst_model_type(tmp_path: Path) -> None:
    (name,) = held_out(["bs_conformer"])
    check_cli(DATA / name, tmp_path, PARITY_DB, "--model-type", "bs_conformer")


# ------------------------------------------------------------ configs


def _config(model_type: str) -> dict:
    (name,) = [n for n in NAMES if _meta(DATA / n)["model_type"] == model_type]
    return load_yaml(DATA / name / "config.yaml")


def _build(model_type: str, config: dict) -> torch.nn.Module:
    return registry.get(model_type).build_function()(model_type, config)  # type: ignore[no-any-return]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_msst_training_keys_are_accepted_and_change_nothing(model_type: str) -> None:
    """Every key of MSST's own conformer configs (config_vocals_*_conformer.yaml)."""
    config = _config(model_type)
    plain = sorted(_build(model_type, config).state_dict())
    config["model"].update({
        "attn_dropout": 0.1, "ff_dropout": 0.1, "flash_attn": True, "dim_freqs_in": 1025,
        "stft_normalized": False, "multi_stft_resolution_loss_weight": 1.0,
        "multi_stft_resolutions_window_sizes": [4096, 2048, 1024, 512, 256],
        "multi_stft_hop_size": 147, "multi_stft_normalized": False,
        "use_torch_checkpoint": True, "sage_attention": False, "zero_dc": True,
    })  # fmt: skip
    assert sorted(_build(model_type, config).state_dict()) == plain


@pytest.mark.parametrize(
    ("model_type", "change", "message"),
    [
        # models/mel_band_conformer.py's key, which MSST's mel_band_conformer refuses
        ("mel_band_conformer", {"conv_dropout": 0.0}, r"unknown model keys \['conv_dropout'\]"),
        ("bs_conformer", {"time_transformer_depth": 1}, "unknown model keys"),
        ("bs_conformer", {"use_pope": False}, "unknown model keys"),
        ("bs_conformer", {"num_bands": 8}, "unknown model keys"),
        ("mel_band_conformer", {"freqs_per_bands": [4, 4]}, "unknown model keys"),
        ("bs_conformer", {"conv_kernel_size": 4}, "conv_kernel_size must be odd"),
        ("mel_band_conformer", {"ff_mult": 0}, "ff_mult must be positive"),
        ("bs_conformer", {"freqs_per_bands": [4, 4]}, "bs_conformer config: freqs_per_bands"),
    ],
)  # fmt: skip
def test_bad_conformer_configs_are_refused(model_type: str, change: dict, message: str) -> None:
    config = _config(model_type)
    config["model"].update(change)
    with pytest.raises(ModelError, match=message):
        _build(model_type, config)


def test_linear_conformer_depth_zero_has_no_linear_transformer() -> None:
    config = _config("bs_conformer")
    config["model"]["linear_conformer_depth"] = 0
    model = _build("bs_conformer", config)
    assert all(len(block) == 2 for block in model.layers)


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_not_conformers(path: Path) -> None:
    """The conformer entries come before the plain RoFormers; plain configs stay plain."""
    found = checkpoints.msst_architecture(load_yaml(path)).name
    assert not found.endswith("_conformer")
