"""MSST's newer RoFormer variants against MSST's own code (commit ccc011a).

Fixtures under tests/data/msst/{bs_roformer_experimental,mel_band_roformer_experimental}
were written by tools/msst_fixtures.py with MSST's `bs_roformer_experimental.py` /
`mel_band_roformer_experimental.py` (value residuals, no DC zeroing), depth 3 so the
later blocks' residual-free path runs; the BS one also learns its value-residual mix,
uses mlp_expansion_factor 2 and carries `sage_attention: true` (accepted, ignored).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from carried import audio_file, audio_files, mixture_of
from e2e_cli import stemsplit
from parity import snr_db

from stemsplit.engine.runner import EngineSettings, separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.zoo import checkpoints
from stemsplit.zoo.loader import load_bundle
from stemsplit.zoo.safe_yaml import load_yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "msst"
WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "configs"
NAMES = ["bs_roformer_experimental", "mel_band_roformer_experimental"]


def _read(path: Path) -> np.ndarray:
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0].T


def _load(name: str):
    folder = DATA / name
    return folder, load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml")


@pytest.mark.parametrize("name", NAMES)
def test_recognised_and_forward_matches_msst(name):
    folder, bundle = _load(name)
    assert checkpoints.msst_architecture(load_yaml(folder / "config.yaml")).name == name
    meta = json.loads((folder / "meta.json").read_text())
    model = bundle.members[0]
    assert model.trunk_config.value_residuals and not model.zero_dc
    mix = _read(mixture_of(folder))
    with torch.inference_mode():
        out = model(torch.from_numpy(mix[:, : meta["chunk_size"]])[None]).numpy()
    expected = np.load(folder / "forward_output.npy")
    assert snr_db(expected, out.reshape(expected.shape)) >= 90


@pytest.mark.parametrize("name", NAMES)
def test_demix_through_the_engine_matches_msst(name):
    folder, bundle = _load(name)
    model = bundle.members[0]
    mix = _read(mixture_of(folder))
    blocks = separate_stream(model, ArraySource(mix, model.samplerate), EngineSettings())
    out = np.concatenate(list(blocks), axis=-1)
    for index, stem in enumerate(model.sources):
        assert snr_db(_read(audio_file(folder / "demix", stem)), out[index]) >= 90, stem


@pytest.mark.parametrize("name", NAMES)
def test_cli_reproduces_msst_demix(name, tmp_path):
    folder = DATA / name
    result = stemsplit(mixture_of(folder), "--checkpoint", folder / "model.ckpt",
                       "--config", folder / "config.yaml", "--bit-depth", "float32",
                       "-o", tmp_path, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    written = {stem: Path(path) for stem, path in track["stems"].items()}
    mix = _read(mixture_of(folder))
    for reference in audio_files(folder / "demix"):
        actual = _read(written[reference.stem])
        assert actual.shape == mix.shape
        assert snr_db(_read(reference), actual) >= 80, reference.stem
    if name.startswith("mel"):  # one target: the residual is written too
        assert sorted(written) == ["other", "vocals"]


def _config(name: str) -> dict:
    return load_yaml(DATA / name / "config.yaml")


def test_value_residual_mix_parameters_only_after_the_first_block():
    state = checkpoints.read_state_dict(DATA / "bs_roformer_experimental" / "model.ckpt")
    mixes = sorted({key.split(".")[1] for key in state if "to_value_residual_mix" in key})
    assert mixes == ["1", "2"]  # blocks 1 and 2 of 3


@pytest.mark.parametrize(
    ("change", "message"),
    [({"num_residual_streams": 4}, "hyper-connections"), ({"zero_dc": True}, "zero_dc"),
     ({"linear_transformer_depth": 1}, "linear_transformer_depth")],
)  # fmt: skip
def test_experimental_config_errors(change, message):
    config = _config("bs_roformer_experimental")
    config["model"].update(change)
    with pytest.raises(ModelError, match=message):
        registry.get("bs_roformer_experimental").build_function()(
            "bs_roformer_experimental", config
        )


def test_sage_attention_is_accepted_and_ignored_by_the_plain_models():
    config = _config("bs_roformer_experimental")
    for key in ("use_value_residual_learning", "num_residual_streams"):
        del config["model"][key]
    assert checkpoints.msst_architecture(config).name == "bs_roformer"
    plain = registry.get("bs_roformer").build_function()("bs_roformer", config)
    del config["model"]["sage_attention"]
    again = registry.get("bs_roformer").build_function()("bs_roformer", config)
    assert sorted(plain.state_dict()) == sorted(again.state_dict())


@pytest.mark.parametrize("path", sorted(WEIGHTS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_recognise_as_before(path):
    """The experimental entries come first in the registry; plain configs stay plain."""
    config = load_yaml(path)
    found = checkpoints.msst_architecture(config).name
    assert not found.endswith("_experimental")
