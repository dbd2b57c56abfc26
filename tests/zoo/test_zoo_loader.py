"""End to end: cards (STEMSPLIT_ZOO) + live server (STEMSPLIT_MIRROR) -> loaded models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import zoo_checkpoints as zc
from cli_run import label

from stemsplit.errors import ModelError, UnknownStem
from stemsplit.zoo.loader import ModelBundle, load_bundle

pytest.importorskip("demucs")
UPSTREAM = "https://dl.fbaipublicfiles.com/demucs/tiny"


@pytest.fixture
def zoo(server, model_dir: Path, tmp_path: Path, monkeypatch):
    """Publish files on the server and cards in STEMSPLIT_ZOO; returns a helper."""
    monkeypatch.setenv("STEMSPLIT_MIRROR", server.base_url)
    cards_path = tmp_path / "zoo.toml"
    monkeypatch.setenv("STEMSPLIT_ZOO", str(cards_path))
    cards: dict = {}

    def publish(name: str, card: dict, payloads: dict[str, bytes]) -> None:
        files = []
        for file_name, payload in payloads.items():
            server.add(file_name, payload)
            files.append(
                {"url": f"{UPSTREAM}/{file_name}", "sha256_prefix": zc.sha256(payload)[:8]}
            )
        cards[name] = {"samplerate": 44100, **card, "files": files}
        zc.write_zoo(cards_path, cards)

    return publish


def _demucs_reference(payload: bytes, tmp_path: Path):
    from demucs.states import load_model

    path = zc.save_bytes(tmp_path / "reference.th", payload)
    return load_model(torch.load(path, weights_only=False)).eval()


@pytest.mark.parametrize("klass", ["HTDemucs", "HDemucs"])
def test_demucs_card_downloads_and_matches_demucs(zoo, server, tmp_path, klass) -> None:
    payload = zc.demucs_package_bytes(zc.demucs_model(klass, seed=1))
    zoo("tiny", {"architecture": "demucs", "sources": zc.SOURCES}, {"tiny-1.th": payload})
    bundle = load_bundle("tiny")
    assert isinstance(bundle, ModelBundle)
    assert bundle.sources == zc.SOURCES and bundle.samplerate == 44100
    assert bundle.weights == [[1.0] * 4] and bundle.residual is None
    assert bundle.card is not None and bundle.card.name == "tiny"
    (model,) = bundle.members
    assert type(model).__name__ == klass and not model.training
    reference = _demucs_reference(payload, tmp_path)  # demucs' own load_model
    expected = reference.state_dict()
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)
    assert len(server.requests_for("tiny-1.th")) == 1


@pytest.mark.slow  # the port's forward on a tiny model; parity itself is tested in models/
@pytest.mark.parametrize("klass", ["HTDemucs", "HDemucs"])
def test_loaded_demucs_forward_matches_demucs(zoo, tmp_path, klass) -> None:
    payload = zc.demucs_package_bytes(zc.demucs_model(klass, seed=1))
    zoo("tiny", {"architecture": "demucs", "sources": zc.SOURCES}, {"tiny-1.th": payload})
    (model,) = load_bundle("tiny").members
    reference = _demucs_reference(payload, tmp_path)
    length = reference.valid_length(4096) if hasattr(reference, "valid_length") else 4096
    mix = torch.randn(1, 2, length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, expected = model(mix), reference(mix)
    max_error = (got - expected).abs().max().item()
    assert max_error < 1e-5, max_error


def test_rerun_of_a_finished_batch_needs_no_model(zoo, server, model_dir, tmp_path) -> None:
    """Skipped tracks take their output names from the card: with every stem written,
    a rerun neither downloads nor loads the model (here: cache emptied, --offline)."""
    import shutil
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    payload = zc.demucs_package_bytes(zc.demucs_model("HDemucs", seed=1))
    zoo("tiny", {"architecture": "demucs", "sources": zc.SOURCES}, {"tiny-1.th": payload})
    track = tmp_path / "song.wav"
    sf.write(track, 0.1 * np.random.default_rng(0).standard_normal((44100, 2)), 44100)

    def run(*extra: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-m", "stemsplit", str(track), "-m", "tiny", "-o",
             str(tmp_path / "out"), "--json", *extra],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["tracks"][0]

    assert run()["status"] == "done"
    assert len(server.requests_for("tiny-1.th")) == 1
    shutil.rmtree(model_dir)
    again = run("--offline")
    assert again["status"] == "skipped"
    assert sorted(again["stems"]) == sorted(zc.SOURCES)
    assert len(server.requests_for("tiny-1.th")) == 1


def test_bag_loads_only_the_members_a_stem_needs(zoo, server) -> None:
    payloads = {
        f"member{i}.th": zc.demucs_package_bytes(zc.demucs_model("HTDemucs", seed=i))
        for i in range(4)
    }
    identity = [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)]
    card = {"architecture": "demucs", "sources": zc.SOURCES, "bag": {"weights": identity}}
    zoo("tiny_ft", card, payloads)
    bundle = load_bundle("tiny-ft", stems=["vocals"])
    assert len(bundle.members) == 1 and bundle.weights == [[0.0, 0.0, 0.0, 1.0]]
    assert [len(server.requests_for(name)) for name in payloads] == [0, 0, 0, 1]
    state = bundle.members[0].state_dict()
    vocals = zc.demucs_model("HTDemucs", seed=3).state_dict()
    key = next(k for k, v in vocals.items() if v.is_floating_point() and v.numel() > 8)
    torch.testing.assert_close(state[key], vocals[key].half().float())
    full = load_bundle("tiny_ft")
    assert len(full.members) == 4 and full.weights == identity


def test_bag_segment_is_applied_as_demucs_does(zoo) -> None:
    payloads = {
        "ht.th": zc.demucs_package_bytes(zc.demucs_model("HTDemucs")),
        "h.th": zc.demucs_package_bytes(zc.demucs_model("HDemucs")),
    }
    for segment, ht_expected in ((44, 10), (4, 4)):
        card = {"architecture": "demucs", "sources": zc.SOURCES, "bag": {"segment": segment}}
        zoo("mixed", card, payloads)
        ht, hybrid = load_bundle("mixed").members
        # HTDemucs keeps its own (training) segment when the bag's is longer
        assert float(ht.segment) == ht_expected
        assert ht.recipe.segment_samples == int(ht_expected * 44100)
        assert float(hybrid.segment) == segment
        assert hybrid.recipe.segment_samples == segment * 44100


def test_roformer_card_with_downloaded_config(zoo, server) -> None:
    model = zc.roformer_model(zc.TINY_MEL_YAML, seed=2)
    payloads = {
        "tiny_mel.ckpt": zc.msst_ckpt_bytes(model, nested=True),
        "tiny_mel.yaml": zc.TINY_MEL_YAML.encode(),
    }
    card = {
        "architecture": "mel_band_roformer",
        "sources": ["vocals"],
        "residual": "instrumental",
        "config": "tiny_mel.yaml",
        "recipe": {"overlap": 0.5, "batch_size": 3},
    }
    zoo("tiny-mel", card, payloads)
    bundle = load_bundle("tiny-mel", stems=["instrumental"])
    assert bundle.sources == ["vocals"] and bundle.residual == "instrumental"
    (loaded,) = bundle.members
    assert loaded.recipe.overlap == 0.5 and loaded.recipe.batch_size == 3
    assert loaded.recipe.segment_samples == 4410  # from the yaml's chunk_size
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(UnknownStem, match="drums"):
        load_bundle("tiny-mel", stems=["drums"])


def test_conv_tasnet_card(zoo) -> None:
    model = zc.tasnet_model(seed=4)
    zoo("tiny-tasnet", {"architecture": "conv_tasnet", "sources": zc.SOURCES,
                        "recipe": {"segment_seconds": 1.0}},
        {"tiny_tasnet.th": zc.state_dict_bytes(model)})  # fmt: skip
    (loaded,) = load_bundle("tiny-tasnet").members
    assert loaded.recipe.segment_samples == 44100
    mix = torch.randn(1, 2, 2000)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mix), model(mix), rtol=0, atol=0)


def test_card_sources_must_match_the_checkpoint(zoo) -> None:
    payload = zc.demucs_package_bytes(zc.demucs_model("HTDemucs"))
    wrong = ["vocals", "drums", "bass", "other"]
    zoo("liar", {"architecture": "demucs", "sources": wrong}, {"liar.th": payload})
    with pytest.raises(ModelError, match="fix the card"):
        load_bundle("liar")


def test_checkpoint_files_are_recognised(tmp_path: Path, model_dir: Path) -> None:
    ht = zc.demucs_model("HTDemucs")
    package = zc.save_bytes(tmp_path / "ht.th", zc.demucs_package_bytes(ht))
    bundle = load_bundle(checkpoint=package)
    assert bundle.name == label(package) and bundle.sources == zc.SOURCES and bundle.card is None
    assert type(bundle.members[0]).__name__ == "HTDemucs"

    mel = zc.roformer_model(zc.TINY_MEL_YAML)
    ckpt = zc.save_bytes(tmp_path / "mel.ckpt", zc.msst_ckpt_bytes(mel))
    config = tmp_path / "mel.yaml"
    config.write_text(zc.TINY_MEL_YAML)
    bundle = load_bundle(checkpoint=ckpt, config=config)
    assert type(bundle.members[0]).__name__ == "MelBandRoformer"
    assert bundle.sources == ["vocals"] and bundle.residual == "other"

    bs = zc.roformer_model(zc.TINY_BS_YAML)
    ckpt = zc.save_bytes(tmp_path / "bs.ckpt", zc.msst_ckpt_bytes(bs, nested=True))
    config = tmp_path / "bs.yaml"
    config.write_text(zc.TINY_BS_YAML)
    bundle = load_bundle(checkpoint=ckpt, config=config)
    assert type(bundle.members[0]).__name__ == "BSRoformer" and len(bundle.sources) == 4
    with pytest.raises(ModelError, match="--config"):
        load_bundle(checkpoint=ckpt)

    tasnet = zc.save_bytes(tmp_path / "tasnet.th", zc.state_dict_bytes(zc.tasnet_model()))
    assert type(load_bundle(checkpoint=tasnet).members[0]).__name__ == "ConvTasNet"


def test_huggingface_layout_bag(tmp_path: Path, model_dir: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    models = [zc.demucs_model("HTDemucs", seed=i) for i in range(2)]
    for signature, model in zip(["aaaa1111", "bbbb2222"], models):
        _, kwargs = model._init_args_kwargs
        metadata = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)}
        state = {k: v.half() for k, v in model.state_dict().items()}
        safetensors_torch.save_file(state, str(tmp_path / f"{signature}.safetensors"), metadata)
    bag = tmp_path / "tiny_bag.yaml"
    bag.write_text("models: ['aaaa1111', 'bbbb2222']\nweights: [[1,1,0,0],[0,0,1,1]]\nsegment: 5\n")
    bundle = load_bundle(checkpoint=bag)
    assert bundle.name == label(bag) and len(bundle.members) == 2
    assert bundle.weights == [[1, 1, 0, 0], [0, 0, 1, 1]]
    assert all(float(m.segment) == 5 for m in bundle.members)
    single = load_bundle(checkpoint=tmp_path / "bbbb2222.safetensors")
    key = "encoder.0.conv.weight"
    torch.testing.assert_close(
        single.members[0].state_dict()[key], models[1].state_dict()[key].half().float()
    )
    # a suffix tells the format whatever its case (an upper-case one was read with torch)
    upper = tmp_path / "BBBB2222.SAFETENSORS"
    upper.write_bytes((tmp_path / "bbbb2222.safetensors").read_bytes())
    assert type(load_bundle(checkpoint=upper).members[0]).__name__ == "HTDemucs"


def test_every_file_format_of_the_registry_has_a_reader() -> None:
    """The registry says each architecture's file format, the loader how each is read:
    a format added to the registry without a reader fails here, not at a user's load."""
    from typing import get_args

    from stemsplit.models import registry
    from stemsplit.zoo import loader

    assert set(loader._READERS) == set(get_args(registry.FileFormat))
    assert {entry.file_format for entry in registry.ARCHITECTURES.values()} <= set(loader._READERS)


def test_real_bag_offline_asks_only_for_the_needed_member(model_dir: Path) -> None:
    """htdemucs_ft -s vocals needs only the vocals specialist (the 4th member)."""
    from stemsplit.errors import DownloadError

    with pytest.raises(DownloadError) as info:
        load_bundle("htdemucs_ft", stems=["vocals"], offline=True)
    message = str(info.value)
    assert "04573f0d-f3cf25b2.th" in message and "offline" in message
    assert (
        "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/04573f0d-f3cf25b2.th" in message
    )
