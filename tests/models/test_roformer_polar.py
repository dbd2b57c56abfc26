"""PolarFormer: MSST's BS-/Mel-Band RoFormers with `use_pope: true` (PoPE positions,
lucidrains' PoPE_pytorch) against MSST's own code.

Fixtures under tests/data/msst/ were written by tools/msst_fixtures_polarformer.py
with MSST's `models/bs_roformer/{bs,mel_band}_roformer.py` (commit ccc011a) and
PoPE-pytorch 0.2.1: a stereo 16 kHz BS-RoFormer with two stems, a linear-attention
transformer before each block, a float16 checkpoint (as MSST's released
`model_bs_popeformer_float16.ckpt`) and demix at batch size 3; a Mel-Band RoFormer
with one target (the residual is written too), skip connections and demix at batch
size 2. PoPE's phase biases lie partly outside their clamp. Each is checked by its
forward, demix through the engine and the real CLI (the architecture recognised
from the yaml alone); the bf16 path against fp32.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from carried import audio_file
from msst_fixture import (
    DATA,
    check_cli,
    check_demix,
    load_fixture,
    mixture_path,
    read_audio,
    read_meta,
)
from parity import snr_db

from stemsplit.models.roformer import build_roformer
from stemsplit.models.roformer.bs_roformer import BSRoformer
from stemsplit.models.roformer.mel_band_roformer import MelBandRoformer
from stemsplit.models.roformer.polar import PolarEmbedding
from stemsplit.zoo import checkpoints
from stemsplit.zoo.safe_yaml import load_yaml

NAMES = ("bs_polarformer", "mel_band_polarformer")
PARITY_DB = 80.0


@pytest.mark.parametrize("name", NAMES)
def test_recognised_from_the_yaml_and_loaded_strictly(name: str) -> None:
    folder = DATA / name
    config = load_yaml(folder / "config.yaml")
    assert config["model"]["use_pope"] is True
    assert checkpoints.msst_architecture(config).name == read_meta(folder)["model_type"]
    (model,) = load_fixture(folder).members  # strict: MSST's pope_embed keys, no rotary
    assert type(model) is (BSRoformer if name.startswith("bs_") else MelBandRoformer)
    keys = model.state_dict()
    assert any(key.endswith("pope_embed.bias") for key in keys)
    assert not any("rotary_embed" in key for key in keys)


@pytest.mark.parametrize("name", NAMES)
def test_forward_matches_msst(name: str) -> None:
    """The first chunk; MSST drops the stem axis of a one-stem network."""
    folder = DATA / name
    (model,) = load_fixture(folder).members
    meta = read_meta(folder)
    mix = read_audio(mixture_path(folder))
    chunk = meta["chunk_size"]
    with torch.inference_mode():
        out = model(torch.from_numpy(mix[:, :chunk].copy())[None]).numpy()
    expected = np.load(folder / "forward_output.npy").reshape(out.shape)
    assert out.shape == (1, len(meta["stems"]), mix.shape[0], chunk)
    assert snr_db(expected, out) >= PARITY_DB


@pytest.mark.parametrize("name", NAMES)
def test_demix_at_msst_batch_size_matches_msst(name: str) -> None:
    folder = DATA / name
    bundle = load_fixture(folder)
    (model,) = bundle.members
    batch_size = load_yaml(folder / "config.yaml")["inference"]["batch_size"]
    assert model.recipe.batch_size == batch_size > 1
    check_demix(folder, bundle, PARITY_DB)


@pytest.mark.parametrize("name", NAMES)
def test_cli_reproduces_msst_demix(name: str, tmp_path: Path) -> None:
    check_cli(DATA / name, tmp_path, PARITY_DB)  # every stem, exact length


def test_cli_bf16_stays_close_to_msst(tmp_path: Path) -> None:
    """The bf16 fast path (band split to masks in bf16, PoPE in fp32) through the CLI."""
    from e2e_cli import stemsplit

    folder = DATA / "bs_polarformer"
    result = stemsplit(folder / "mixture.flac", "--checkpoint", folder / "model.ckpt",
                       "--config", folder / "config.yaml", "--precision", "bf16",
                       "--bit-depth", "float32", "--clip", "none", "-o", tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for stem in read_meta(folder)["stems"]:
        (written,) = tmp_path.rglob(f"{stem}.wav")
        expected = read_audio(audio_file(folder / "demix", stem))
        assert snr_db(expected, read_audio(written)) >= 25, stem


@pytest.mark.parametrize("architecture", ["bs_roformer", "mel_band_roformer"])
def test_bf16_close_to_fp32(architecture: str) -> None:
    name = "bs_polarformer" if architecture == "bs_roformer" else "mel_band_polarformer"
    (model,) = load_fixture(DATA / name).members
    mix = torch.randn(2, 2, 16000, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.inference_mode():
        expected = model(mix)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(mix)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert snr_db(got.numpy(), expected.numpy()) >= 30


def test_polar_embedding_is_the_papers_score() -> None:
    """score(q, k) = sum_j softplus(q_j) softplus(k_j) cos((m - n) w_j - clamp(b_hj)) / sqrt(d),
    written out per pair of positions."""
    torch.manual_seed(0)
    heads, length, dim = 2, 5, 4
    embed = PolarEmbedding(dim, heads)
    with torch.no_grad():
        embed.bias.copy_(torch.tensor([[-1.0, 0.3, -7.0, -2.0], [0.0, -0.5, -6.0, 1.0]]))
    query, key = torch.randn(1, heads, length, dim), torch.randn(1, heads, length, dim)
    polar_q, polar_k = embed.polar(query, key)
    scores = (polar_q @ polar_k.transpose(-1, -2)) / math.sqrt(2 * dim)
    w = embed.inv_freqs
    bias = embed.bias.clamp(-2 * math.pi, 0)
    for h in range(heads):
        for m in range(length):
            for n in range(length):
                terms = (torch.nn.functional.softplus(query[0, h, m])
                         * torch.nn.functional.softplus(key[0, h, n])
                         * torch.cos((m - n) * w - bias[h]))  # fmt: skip
                assert scores[0, h, m, n].item() == pytest.approx(
                    terms.sum().item() / math.sqrt(dim), rel=1e-5, abs=1e-6
                )


def test_inv_freqs_come_from_the_checkpoint() -> None:
    """A float16 checkpoint's rounded frequencies are the ones used (MSST loads them)."""
    (model,) = load_fixture(DATA / "bs_polarformer").members
    state = checkpoints.read_state_dict(DATA / "bs_polarformer" / "model.ckpt")
    key = next(k for k in state if k.endswith("pope_embed.inv_freqs"))
    assert torch.equal(model.state_dict()[key], state[key].float())
    assert not torch.equal(state[key].float(), PolarEmbedding(8, 2).inv_freqs)


def test_rotary_models_are_unchanged_by_the_option() -> None:
    config = load_yaml(DATA / "bs_polarformer" / "config.yaml")
    config["model"]["use_pope"] = False
    keys = build_roformer("bs_roformer", config).state_dict()
    assert any(k.endswith("rotary_embed.freqs") for k in keys)
    assert not any("pope_embed" in k for k in keys)


def test_the_v1_0_20_card() -> None:
    from stemsplit.zoo.catalog import get_card

    card = get_card("polarformer")
    assert card.name == "bs-polarformer" and card.architecture == "bs_roformer"
    assert card.quality["sdr"] == {"vocals": 11.00}
    assert {f.name for f in card.files} == {
        "model_bs_polarformer_float16.ckpt", "model_bs_polarformer_float16.yaml"
    }
    assert all("/releases/download/v1.0.20/" in f.url for f in card.files)
