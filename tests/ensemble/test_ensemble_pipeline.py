"""Ensembles through the whole path (API -> engine -> files) with deterministic models."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from band_model import BandSplit, Bundle

import stemsplit.api as api
from stemsplit.options import ALGORITHMS

FOUR = ["drums", "bass", "other", "vocals"]


class FourToy(BandSplit):
    """drums 0.1 x, bass = low band, other and vocals half the high band each (minus 0.1 x)."""

    sources = FOUR

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        low, high = super().forward(mix).unbind(1)
        return torch.stack([0.1 * mix, low, 0.5 * high, 0.5 * high - 0.1 * mix], dim=1)


class VocalToy(BandSplit):
    """A one-target "vocals" model (0.6 of the high band); its residual is `other`."""

    sources = ["vocals"]

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return 0.6 * super().forward(mix)[:, 1:]


def _song(path, seconds=2.3, rate=44100, seed=0):
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal((int(seconds * rate), 2)) * 0.2).astype(np.float32)
    sf.write(path, audio, rate, subtype="FLOAT")
    return audio


def _stems(folder) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.wav")):
        out[path.stem], _ = sf.read(path, dtype="float32")
    return out


def _separate(src, out, model, name, **options):
    api.separate(src, model=model, out=out, bit_depth="float32", clip="none", **options)
    return _stems(out / name / src.stem)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_ensemble_of_one_and_of_two_identical_models_equals_the_model(tmp_path, algorithm):
    src = tmp_path / "song.wav"
    _song(src)
    alone = _separate(src, tmp_path / "alone", Bundle([FourToy()], name="a"), "a")
    one = _separate(src, tmp_path / "one", [Bundle([FourToy()], name="a")], "a",
                    ensemble=algorithm)  # fmt: skip
    twins = [Bundle([FourToy()], name="a"), Bundle([FourToy()], name="b")]
    two = _separate(src, tmp_path / "two", twins, "a+b", ensemble=algorithm)
    assert set(alone) == set(one) == set(two) == set(FOUR)
    exact = algorithm not in ("avg-spec", "max-spec", "min-spec")
    for stem in FOUR:
        np.testing.assert_array_equal(one[stem], alone[stem])
        np.testing.assert_allclose(two[stem], alone[stem], rtol=0, atol=0 if exact else 2e-6)


def test_models_with_other_rates_and_recipes_average_in_one_pass(tmp_path):
    """A 44.1 kHz Demucs-style model (triangle, context, normalised) and a 22.05 kHz
    MSST-style one (fades, reflect border, 22050-sample segments): avg equals the
    mean of each model's own output; median of two equals it too."""
    src = tmp_path / "song.wav"
    audio = _song(src, seconds=3.1)
    a = Bundle([FourToy(44100)], name="a")
    b = Bundle([FourToy(22050, window="fade")], name="b")
    single_a = _separate(src, tmp_path / "sa", a, "a")
    single_b = _separate(src, tmp_path / "sb", b, "b")
    assert np.abs(single_a["bass"] - single_b["bass"]).max() > 1e-3  # they differ
    for algorithm in ("avg", "median"):
        both = _separate(src, tmp_path / algorithm, [a, b], "a+b", ensemble=algorithm)
        for stem in FOUR:
            assert both[stem].shape == audio.shape
            np.testing.assert_allclose(both[stem], (single_a[stem] + single_b[stem]) / 2,
                                       rtol=0, atol=1e-6)  # fmt: skip


def test_vocal_model_and_four_stem_model_by_name(tmp_path):
    src = tmp_path / "song.wav"
    _song(src)
    vocal = Bundle([VocalToy(window="fade")], name="v", residual="other")
    four = Bundle([FourToy()], name="f")
    v = _separate(src, tmp_path / "v", vocal, "v")
    f = _separate(src, tmp_path / "f", four, "f")
    both = _separate(src, tmp_path / "vf", [vocal, four], "v+f", weights=[{"vocals": 3}, {}])
    assert set(both) == set(FOUR)
    np.testing.assert_allclose(both["vocals"], 0.75 * v["vocals"] + 0.25 * f["vocals"], atol=1e-6)
    np.testing.assert_allclose(both["other"], f["other"], atol=0)  # not the vocal residual
    inst = _separate(src, tmp_path / "i", [vocal, four], "v+f", stems=["instrumental", "drums"])
    assert set(inst) == {"instrumental", "drums"}
    expected = (v["other"] + f["drums"] + f["bass"] + f["other"]) / 2
    np.testing.assert_allclose(inst["instrumental"], expected, atol=2e-6)
    two = _separate(src, tmp_path / "t", [vocal, four], "v+f", two_stems="vocals")
    mix, _ = sf.read(src, dtype="float32")
    np.testing.assert_allclose(two["vocals"] + two["no_vocals"], mix, atol=1e-6)


def test_unneeded_models_are_not_run(tmp_path):
    src = tmp_path / "song.wav"
    _song(src)
    vocal_model, four_model = VocalToy(), FourToy()
    calls = {"v": 0, "f": 0}
    vocal_model.register_forward_hook(lambda *_: calls.__setitem__("v", calls["v"] + 1))
    four_model.register_forward_hook(lambda *_: calls.__setitem__("f", calls["f"] + 1))
    models = [Bundle([vocal_model], name="v", residual="other"), Bundle([four_model], name="f")]
    out = _separate(src, tmp_path, models, "v+f", stems=["drums"])
    assert set(out) == {"drums"} and calls["v"] == 0 and calls["f"] > 0
