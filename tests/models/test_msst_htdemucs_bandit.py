"""MSST-format HTDemucs and BandIt v2 against MSST's own outputs (commit ccc011a).

Fixtures: the held-out ones under tests/data/msst/ (sizes, stems, chunk sizes,
num_overlap; written by tools/msst_fixtures.py from MSST's public code), and
{htdemucs_msst,bandit_v2} when a STEMSPLIT_FIXTURES folder (../shared/fixtures) has
them. Each is checked three ways: the network's forward on the first chunk, demix
through the engine, and the real CLI (`python -m stemsplit MIX --checkpoint --config`) with the architecture
recognised from the yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from carried import audio_file, audio_files
from e2e_cli import stemsplit
from msst_fixture import extra, fixture_folder, held_out, mixture_path
from msst_fixture import read_audio as _read
from msst_fixture import read_meta as _meta
from parity import snr_db

from stemsplit.engine.runner import EngineSettings, separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.errors import ModelError
from stemsplit.models import registry
from stemsplit.zoo import checkpoints
from stemsplit.zoo.loader import load_bundle
from stemsplit.zoo.safe_yaml import load_yaml

FORWARD_DB = 90.0
DEMIX_DB = 90.0
CLI_DB = 80.0

HELD_OUT = held_out(["htdemucs", "bandit_v2"])
ALL = extra(["htdemucs_msst", "bandit_v2"]) + HELD_OUT


@pytest.mark.parametrize("name", ALL)
def test_recognised_from_the_yaml(name):
    folder = fixture_folder(name)
    config = load_yaml(folder / "config.yaml")
    assert checkpoints.msst_architecture(config).name == _meta(folder)["model_type"]


@pytest.mark.parametrize("name", ALL)
def test_forward_matches_msst(name):
    folder = fixture_folder(name)
    meta = _meta(folder)
    model = load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml").members[0]
    assert list(model.sources) == meta["stems"]
    mix = _read(mixture_path(folder))
    with torch.inference_mode():
        out = model(torch.from_numpy(mix[:, : meta["chunk_size"]])[None]).numpy()
    expected = np.load(folder / "forward_output.npy")
    assert out.shape == expected.shape
    assert snr_db(expected, out) >= FORWARD_DB


@pytest.mark.parametrize("name", ALL)
def test_demix_through_the_engine_matches_msst(name):
    folder = fixture_folder(name)
    model = load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml").members[0]
    mix = _read(mixture_path(folder))
    blocks = separate_stream(model, ArraySource(mix, model.samplerate), EngineSettings())
    out = np.concatenate(list(blocks), axis=-1)
    assert out.shape == (len(model.sources), 2, mix.shape[-1])
    for index, stem in enumerate(model.sources):
        expected = _read(audio_file(folder / "demix", stem))
        assert snr_db(expected, out[index]) >= DEMIX_DB, stem


@pytest.mark.parametrize("name", ALL)
def test_cli_reproduces_msst_demix(name, tmp_path):
    folder = fixture_folder(name)
    result = stemsplit(mixture_path(folder), "--checkpoint", folder / "model.ckpt",
                       "--config", folder / "config.yaml", "--bit-depth", "float32",
                       "-o", tmp_path, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    assert track["status"] == "done", track
    written = {stem: Path(path) for stem, path in track["stems"].items()}
    references = audio_files(folder / "demix")
    assert sorted(written) == sorted(p.stem for p in references) == sorted(_meta(folder)["stems"])
    length = soundfile.info(str(mixture_path(folder))).frames
    for reference in references:
        actual = _read(written[reference.stem])
        expected = _read(reference)
        assert actual.shape == expected.shape == (2, length)
        assert snr_db(expected, actual) >= CLI_DB, reference.stem


# --- HTDemucs in MSST's layout -------------------------------------------------------


def _htdemucs_config() -> dict:
    return load_yaml(fixture_folder("htdemucs_small") / "config.yaml")


def test_msst_demucs_recipe():
    config = _htdemucs_config()
    model = registry.get("htdemucs").build_function()("htdemucs", config)
    recipe = model.recipe
    # MSST's demucs mode: chunks of training.segment (2) x samplerate (16 kHz), step
    # chunk // num_overlap (4)
    assert (recipe.segment_samples, recipe.overlap) == (32000, 0.75)
    assert (recipe.window, recipe.padding, recipe.normalization) == ("uniform", "zeros", "none")
    config["inference"]["normalize"] = True
    config["training"]["segment"] = 3
    recipe = registry.get("htdemucs").build_function()("htdemucs", config).recipe
    assert (recipe.segment_samples, recipe.normalization) == (48000, "track-mean-std")


def test_msst_hdemucs_section_builds_hdemucs():
    """DrumSep's config says `model: hdemucs` (MSST still runs it as --model_type htdemucs)."""
    config = _htdemucs_config()
    config["model"] = "hdemucs"
    config["hdemucs"] = {"channels": 4, "depth": 6, "nfft": 4096, "dconv_lstm": 4,
                         "dconv_attn": 4, "dconv_comp": 4}  # fmt: skip
    del config["htdemucs"]
    assert checkpoints.msst_architecture(config).name == "htdemucs"
    model = registry.get("htdemucs").build_function()("htdemucs", config)
    assert type(model).__name__ == "MsstHDemucs" and model.recipe.window == "uniform"
    with torch.inference_mode():
        assert model(torch.zeros(1, 2, 4410)).shape == (1, 2, 2, 4410)  # vocals, other


@pytest.mark.parametrize(
    ("change", "message"),
    [({"num_subbands": 2}, "num_subbands"), ({"bogus": 1}, "bogus"),
     ({"t_sparse_self_attn": True}, "sparse")],
)  # fmt: skip
def test_msst_demucs_config_errors(change, message):
    config = _htdemucs_config()
    config["htdemucs"].update(change)
    with pytest.raises(ModelError, match=message):
        registry.get("htdemucs").build_function()("htdemucs", config)


def test_demucs_package_with_msst_yaml_uses_the_yaml(tmp_path):
    """MSST loads a Demucs package's `state` into the network its yaml describes."""
    folder = fixture_folder("htdemucs_small")
    state = checkpoints.read_state_dict(folder / "model.ckpt")
    package = {"klass": "demucs.htdemucs.HTDemucs", "args": [], "kwargs": {}, "state": state}
    torch.save(package, tmp_path / "package.th")
    model = load_bundle(checkpoint=tmp_path / "package.th", config=folder / "config.yaml")
    assert model.members[0].recipe.window == "uniform"


# --- BandIt v2 -------------------------------------------------------------------------


def test_bandit_aliases_load_strictly_and_must_agree():
    """MSST's mask heads hold norm/hidden/output twice (also as `combined.K`)."""
    folder = fixture_folder("bandit_v2_small")
    state = checkpoints.read_state_dict(folder / "model.ckpt")
    config = load_yaml(folder / "config.yaml")
    model = registry.get("bandit_v2").build_function()("bandit_v2", config)
    assert sorted(model.state_dict()) == sorted(state)  # the aliases are written back too
    alias = "mask_estim.music.norm_mlp.3.combined.1.0.weight"
    assert alias in state and "mask_estim.music.norm_mlp.3.hidden.0.weight" in state
    model.load_state_dict(state, strict=True)
    # one tensor per pair: only the canonical copy is a parameter
    names = {name for name, _ in model.named_parameters()}
    assert alias not in names and "mask_estim.music.norm_mlp.3.hidden.0.weight" in names
    broken = dict(state)
    broken[alias] = broken[alias] + 1
    with pytest.raises(RuntimeError, match="differs"):
        model.load_state_dict(broken, strict=True)
    del broken[alias]
    model.load_state_dict(broken, strict=True)  # the canonical copy alone is enough
    with pytest.raises(RuntimeError):
        model.load_state_dict({k: v for k, v in state.items() if "freq_weights/3" not in k})


def test_bandit_config_errors():
    config = load_yaml(fixture_folder("bandit_v2_small") / "config.yaml")
    build = registry.get("bandit_v2").build_function()
    for change, message in [({"in_channels": 2}, "mono"), ({"bogus": 1}, "bogus"),
                            ({"hidden_activation": "os"}, "activation"),
                            ({"rnn_type": "Transformer"}, "rnn_type")]:  # fmt: skip
        broken = {**config, "kwargs": {**config["kwargs"], **change}}
        with pytest.raises(ModelError, match=message):
            build("bandit_v2", broken)
    # three instruments for a network of two stems
    broken = {**config, "training": {**config["training"], "instruments": ["a", "b", "c"]}}
    with pytest.raises(ModelError, match="kwargs.stems"):
        build("bandit_v2", broken)
