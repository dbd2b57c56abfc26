"""The built-in model cards: complete, consistent, and faithful to upstream facts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zoo_checkpoints as zc

from stemsplit.errors import ModelError, UnknownModel
from stemsplit.zoo import catalog
from stemsplit.zoo.checkpoints import msst_architecture

DEMUCS_NAMES = ["htdemucs", "htdemucs_ft", "htdemucs_6s", "hdemucs_mmi", "mdx_extra", "mdx"]


@pytest.fixture(autouse=True)
def _builtin_only(monkeypatch) -> None:
    monkeypatch.delenv("STEMSPLIT_ZOO", raising=False)


def test_every_card_is_complete() -> None:
    cards = catalog.list_cards()
    assert len(cards) >= 14
    keys = set()
    for card in cards:
        assert card.description and card.licence and card.quality.get("source"), card.name
        assert card.samplerate == 44100 and card.sources
        for spec in card.files:
            assert spec.url.startswith("https://") and spec.url.endswith(spec.name), spec.url
        names = {catalog.normalize(n) for n in (card.name, *card.aliases)}
        assert not names & keys, f"{card.name}: name or alias used twice"
        keys |= names
    assert catalog.weights_dir().joinpath("configs").is_dir()


def test_demucs_cards_match_demucs_remote_files() -> None:
    """Signatures, sha prefixes, bag weights and segments equal demucs' remote/*.yaml."""
    pytest.importorskip("demucs")
    import demucs
    import yaml

    remote = Path(demucs.__file__).parent / "remote"
    listed = {
        line.strip()
        for line in (remote / "files.txt").read_text().splitlines()
        if line.strip().endswith(".th")
    }
    for name in DEMUCS_NAMES:
        card = catalog.get_card(name)
        bag = yaml.safe_load((remote / f"{name}.yaml").read_text())
        assert [spec.name.split("-")[0] for spec in card.files] == bag["models"]
        for spec in card.files:
            assert spec.name in listed
            assert spec.name == f"{spec.name.split('-')[0]}-{spec.sha256_prefix}.th"
        expected = bag.get("weights") or [[1.0] * len(card.sources)] * len(bag["models"])
        assert card.member_weights() == expected
        assert card.bag_segment == bag.get("segment")


def test_roformer_configs_ship_and_agree_with_cards() -> None:
    for card in catalog.list_cards():
        if card.architecture not in ("bs_roformer", "mel_band_roformer"):
            continue
        if card.config in {spec.name for spec in card.files}:
            continue  # downloaded with the checkpoint
        config = catalog.load_card_config(card)
        assert msst_architecture(config).name == card.architecture, card.name
        training = config["training"]
        target = training.get("target_instrument")
        expected = [target] if target else training["instruments"]
        assert [s.lower() for s in expected] == list(card.sources), card.name
        if target:
            others = [s.lower() for s in training["instruments"] if s != target]
            assert card.residual == others[0].lower(), card.name


def test_lookup_by_alias_and_spelling() -> None:
    assert catalog.get_card("HTDemucs-FT").name == "htdemucs_ft"
    assert catalog.get_card("bs_roformer_viperx_1297").name == "bs-roformer-viperx-1297"
    assert catalog.get_card("mel-roformer").name == "mel-roformer-kj"
    with pytest.raises(UnknownModel, match="did you mean htdemucs_ft") as info:
        catalog.get_card("htdemucs_fx")
    assert info.value.exit_code == 2


def test_extra_cards_add_and_override(tmp_path: Path, monkeypatch) -> None:
    path = zc.write_zoo(tmp_path / "extra.toml", {
        "htdemucs": {"architecture": "demucs", "sources": ["a", "b"], "samplerate": 8000,
                     "files": [{"url": "https://example.org/x/own.th", "sha256": "ab" * 32}]},
        "mine": {"architecture": "conv_tasnet", "sources": ["s"], "samplerate": 16000,
                 "aliases": ["my-model"],
                 "files": [{"url": "https://example.org/m.th", "mirrors": ["https://m.org/m.th"]}]},
    })  # fmt: skip
    monkeypatch.setenv("STEMSPLIT_ZOO", str(path))
    assert catalog.get_card("htdemucs").samplerate == 8000
    assert catalog.get_card("htdemucs").files[0].name == "own.th"
    mine = catalog.get_card("my-model")
    assert mine.name == "mine" and mine.files[0].mirrors == ("https://m.org/m.th",)
    assert catalog.get_card("mdx_extra").name == "mdx_extra"  # built-ins stay
    monkeypatch.setenv("STEMSPLIT_ZOO", str(tmp_path / "absent.toml"))
    with pytest.raises(ModelError, match="STEMSPLIT_ZOO"):
        catalog.list_cards()


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"sources": ["a"], "samplerate": 1, "files": [{"url": "https://x/y"}]}, "architecture"),
        ({"architecture": "wavenet", "sources": ["a"], "samplerate": 1,
          "files": [{"url": "https://x/y"}]}, "unknown architecture"),
        ({"architecture": "demucs", "sources": ["a", "b"], "samplerate": 1,
          "bag": {"weights": [[1.0]]}, "files": [{"url": "https://x/y"}]}, "bag weights"),
    ],
)  # fmt: skip
def test_broken_cards_are_model_errors(tmp_path: Path, monkeypatch, broken, message) -> None:
    path = tmp_path / "broken.toml"
    if "files" in broken:
        zc.write_zoo(path, {"bad": broken})
    monkeypatch.setenv("STEMSPLIT_ZOO", str(path))
    with pytest.raises(ModelError, match=message):
        catalog.list_cards()
    path.write_text("[bad\nname = ")
    with pytest.raises(ModelError, match=re.escape(str(path))):
        catalog.list_cards()


def test_extra_card_config_beside_its_toml(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tiny.yaml").write_text(zc.TINY_MEL_YAML)
    path = zc.write_zoo(tmp_path / "extra.toml", {
        "tiny-mel": {"architecture": "mel_band_roformer", "sources": ["vocals"],
                     "samplerate": 44100, "config": "tiny.yaml",
                     "files": [{"url": "https://example.org/tiny.ckpt"}]},
        "kj-again": {"architecture": "mel_band_roformer", "sources": ["vocals"],
                     "samplerate": 44100, "config": "config_vocals_mel_band_roformer_kj.yaml",
                     "files": [{"url": "https://example.org/kj.ckpt"}]},
    })  # fmt: skip
    monkeypatch.setenv("STEMSPLIT_ZOO", str(path))
    assert catalog.load_card_config(catalog.get_card("tiny-mel"))["model"]["num_bands"] == 4
    assert catalog.load_card_config(catalog.get_card("kj-again"))["model"]["num_bands"] == 60
