"""Ensembles by stem content: who votes for what, checked on hand-made stems."""

from __future__ import annotations

import numpy as np
import pytest

from stemsplit.engine.ensemble import ensemble_stems, plan_ensemble
from stemsplit.errors import UsageError

FOUR = (("drums", "bass", "other", "vocals"), None)
SIX = (("drums", "bass", "other", "vocals", "guitar", "piano"), None)
VOCALS = (("vocals",), "other")
N = 5000  # longer than two STFT frames


def _stems(names, seed):
    """Distinct random blocks per stem name: [len(names), 2, N]."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((2, N)).astype(np.float32) for name in names}


def _run(layout, per_model, needed=None, block=700):
    streams = []
    for names, stems in zip(layout.streams, per_model):
        full = np.stack([stems[n] for n in names])
        streams.append([full[..., i : i + block] for i in range(0, N, block)])
    out = np.concatenate(list(ensemble_stems(streams, layout, needed)), axis=-1)
    return dict(zip(layout.stems, out))


def test_six_stem_guitar_and_piano_fold_into_a_four_stem_other():
    layout = plan_ensemble([FOUR, SIX])
    assert layout.stems == ("drums", "bass", "other", "vocals")
    a = _stems(FOUR[0], 0)
    b = _stems(SIX[0], 1)
    out = _run(layout, [a, b])
    np.testing.assert_allclose(out["other"], (a["other"] + b["other"] + b["guitar"] + b["piano"]) / 2,
                               atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(out["drums"], (a["drums"] + b["drums"]) / 2, atol=1e-6)


def test_asked_for_guitar_stays_separate_and_four_stem_models_do_not_vote():
    layout = plan_ensemble([FOUR, SIX], requested=["guitar"])
    assert set(layout.stems) == {"drums", "bass", "other", "vocals", "guitar"}
    a, b = _stems(FOUR[0], 0), _stems(SIX[0], 1)
    out = _run(layout, [a, b])
    # the 4-stem `other` holds guitar too: it can vote for neither
    np.testing.assert_allclose(out["guitar"], b["guitar"], atol=0)
    np.testing.assert_allclose(out["other"], b["other"] + b["piano"], atol=1e-6)
    np.testing.assert_allclose(out["vocals"], (a["vocals"] + b["vocals"]) / 2, atol=1e-6)
    # two 6-stem models keep all six without being asked
    assert len(plan_ensemble([SIX, SIX]).stems) == 6


def test_vocal_model_votes_for_vocals_and_its_residual_for_instrumental():
    layout = plan_ensemble([VOCALS, FOUR], requested=["instrumental"])
    assert layout.stems == ("drums", "bass", "other", "vocals", "instrumental")
    assert layout.streams[0] == ("vocals", "other")  # the residual travels with the vocals
    v = _stems(("vocals", "other"), 2)  # `other` here is the vocal model's residual
    f = _stems(FOUR[0], 3)
    out = _run(layout, [v, f])
    np.testing.assert_allclose(out["vocals"], (v["vocals"] + f["vocals"]) / 2, atol=1e-6)
    np.testing.assert_allclose(out["other"], f["other"], atol=0)  # never the residual
    np.testing.assert_allclose(out["drums"], f["drums"], atol=0)
    instrumental = (v["other"] + f["drums"] + f["bass"] + f["other"]) / 2
    np.testing.assert_allclose(out["instrumental"], instrumental, atol=1e-5)
    # without asking, no instrumental and no residual stream
    plain = plan_ensemble([VOCALS, FOUR])
    assert plain.stems == ("drums", "bass", "other", "vocals") and plain.streams[0] == ("vocals",)


def test_two_vocal_models_give_vocals_and_their_residual():
    layout = plan_ensemble([VOCALS, VOCALS], algorithm="median")
    assert layout.stems == ("vocals", "other")
    renamed = plan_ensemble([(("vocals",), "instrumental")] * 2)
    assert renamed.stems == ("vocals", "instrumental")


def test_weights_per_model_and_stem():
    layout = plan_ensemble([FOUR, FOUR], weights=[{"*": 1.0, "vocals": 3.0}, {"drums": 0.0}])
    a, b = _stems(FOUR[0], 4), _stems(FOUR[0], 5)
    out = _run(layout, [a, b])
    np.testing.assert_allclose(out["vocals"], 0.75 * a["vocals"] + 0.25 * b["vocals"], atol=1e-6)
    np.testing.assert_allclose(out["drums"], a["drums"], atol=0)  # weight 0: no vote
    np.testing.assert_allclose(out["bass"], (a["bass"] + b["bass"]) / 2, atol=1e-6)
    with pytest.raises(UsageError, match=">= 0"):
        plan_ensemble([FOUR, FOUR], weights=[{"*": -1.0}, {}])
    with pytest.raises(UsageError, match="unknown ensemble algorithm"):
        plan_ensemble([FOUR, FOUR], algorithm="mean")


def test_needs_name_only_the_sources_a_stem_uses():
    layout = plan_ensemble([VOCALS, FOUR, SIX], requested=["instrumental"])
    assert layout.needs(1, {"vocals"}) == {"vocals"}
    assert layout.needs(0, {"drums"}) == set()  # the vocal model is not run for drums
    assert layout.needs(0, {"instrumental"}) == {"vocals"}  # its residual needs its vocals
    assert layout.needs(2, {"other"}) == {"other", "guitar", "piano"}


def test_only_needed_stems_are_computed_others_are_zero():
    layout = plan_ensemble([FOUR, FOUR], algorithm="max-spec")
    a, b = _stems(FOUR[0], 6), _stems(FOUR[0], 7)
    out = _run(layout, [a, b], needed={"vocals"})
    assert not out["drums"].any() and out["vocals"].shape == (2, N)
    full = _run(layout, [a, b])
    np.testing.assert_allclose(out["vocals"], full["vocals"], atol=0)
    # max-spec of a model and a silent copy is that model (away from the edges too)
    silent = {k: np.zeros_like(v) for k, v in a.items()}
    alone = _run(layout, [a, silent])
    np.testing.assert_allclose(alone["bass"], a["bass"], atol=1e-5)
