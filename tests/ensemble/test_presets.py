"""Presets (weights/presets.toml) and how `-m`/`--weights`/`--ensemble` expand."""

from __future__ import annotations

from pathlib import Path

import pytest

from stemsplit.engine.ensemble import plan_ensemble
from stemsplit.errors import ModelError, UnknownModel, UsageError
from stemsplit.options import ALGORITHMS
from stemsplit.zoo import catalog


@pytest.fixture(autouse=True)
def _builtin_only(monkeypatch) -> None:
    monkeypatch.delenv("STEMSPLIT_ZOO", raising=False)


def test_builtin_presets_are_built_from_real_cards():
    presets = {p.name: p for p in catalog.list_presets()}
    assert {"vocals-best", "instrumental-best", "4stem-best"} <= set(presets)
    card_names = {c.name for c in catalog.list_cards()}
    for preset in presets.values():
        assert preset.why and preset.description and preset.ensemble in ALGORITHMS
        assert set(preset.models) <= card_names, preset.name
        cards = [catalog.get_card(m) for m in preset.models]
        layout = plan_ensemble([(c.sources, c.residual) for c in cards], preset.stems,
                               preset.weights, preset.ensemble)  # fmt: skip
        assert set(preset.stems) <= set(layout.stems), preset.name
    assert plan_ensemble(
        [(c.sources, c.residual) for c in map(catalog.get_card, presets["4stem-best"].models)],
        weights=presets["4stem-best"].weights,
    ).stems == ("drums", "bass", "other", "vocals")
    # the published figures quoted in `why` are the cards' own
    kj = catalog.get_card("mel-roformer-kj").quality["sdr"]["vocals"]
    assert f"{kj:.2f}" in presets["vocals-best"].why
    with pytest.raises(UnknownModel, match="is a preset"):
        catalog.get_card("vocals-best")


def test_expand_models_weights_and_algorithm():
    plain = catalog.expand_models(["htdemucs"])
    assert plain.names == ["htdemucs"] and plain.ensemble == "avg" and plain.stems == ()
    best = catalog.expand_models(["vocals-best"])
    assert best.names == ["mel-roformer-kj", "bs-roformer-viperx-1297"]
    assert best.ensemble == "avg" and best.stems == ("vocals", "instrumental")
    assert best.label == "vocals-best"
    # a weight for the preset scales its members; one for a member by name replaces
    mixed = catalog.expand_models(
        ["4stem-best", "htdemucs"],
        {"4stem-best": {"vocals": 2.0}, "htdemucs_ft": {"drums": 5.0}, "htdemucs": 0.5},
        ensemble="median",
    )
    assert mixed.names == ["bs-roformer-zfturbo-4stem", "htdemucs_ft", "mel-roformer-kj",
                           "htdemucs"]  # fmt: skip
    zf, ft, kj, ht = mixed.weights
    assert zf["vocals"] == 2.0 and zf["*"] == 1.0
    assert ft["drums"] == 5.0 and ft["vocals"] == 2.0
    assert kj["vocals"] == 2.0 and kj["*"] == 0.0 and ht == {"*": 0.5}
    assert mixed.ensemble == "median" and mixed.stems == ()  # not a lone preset
    assert catalog.expand_models(["a", "b"], [2, {"vocals": 3}]).weights == [
        {"*": 2.0}, {"vocals": 3.0}]  # fmt: skip
    with pytest.raises(UsageError, match="not one of the models"):
        catalog.expand_models(["htdemucs", "tasnet"], {"mdx": 2})
    with pytest.raises(UsageError, match="one per model"):
        catalog.expand_models(["htdemucs", "tasnet"], [1])
    with pytest.raises(UsageError, match="different algorithms"):
        catalog.expand_models(["vocals-best", "instrumental-best"])


def test_presets_in_stemsplit_zoo_are_checked(tmp_path: Path, monkeypatch):
    path = tmp_path / "zoo.toml"
    path.write_text('[mine]\nmodels = ["htdemucs", "tasnet"]\nweights = { mdx = 1 }\n')
    monkeypatch.setenv("STEMSPLIT_ZOO", str(path))
    with pytest.raises(ModelError, match="keyed by names from `models`"):
        catalog.list_presets()
    path.write_text('[mine]\nmodels = ["htdemucs", "tasnet"]\nweights = { tasnet = -1 }\n')
    with pytest.raises(ModelError, match=">= 0"):
        catalog.list_presets()
    path.write_text('[mine]\nmodels = ["htdemucs", "tasnet"]\nensemble = "max-mag"\n'
                    'weights = { tasnet = { vocals = 2 } }\n')  # fmt: skip
    (preset,) = [p for p in catalog.list_presets() if p.name == "mine"]
    assert preset.weights == ({"*": 1.0}, {"vocals": 2.0}) and preset.ensemble == "max-mag"
    assert len(catalog.list_cards()) >= 14  # presets are not read as model cards


def test_cli_weights_syntax():
    from stemsplit.cli.separate import _parse_weights

    models = ["htdemucs_ft", "mel-roformer-kj"]
    assert _parse_weights(["2,1"], models) == [{"*": 2.0}, {"*": 1.0}]
    assert _parse_weights(["htdemucs_ft:vocals=2,drums=0"], models) == {
        "htdemucs_ft": {"vocals": 2.0, "drums": 0.0}}  # fmt: skip
    assert _parse_weights(["2,1", "mel-roformer-kj:vocals=3"], models) == {
        "htdemucs_ft": {"*": 2.0}, "mel-roformer-kj": {"*": 1.0, "vocals": 3.0}}  # fmt: skip
    with pytest.raises(UsageError, match="one weight per model"):
        _parse_weights(["2"], models)
    with pytest.raises(UsageError, match="use numbers"):
        _parse_weights(["htdemucs_ft:vocals=lots"], models)
