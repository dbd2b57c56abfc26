"""Metrics against closed forms and torchmetrics; the evaluate library on synthetic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemsplit import metrics
from stemsplit.errors import InputError, UsageError
from stemsplit.evaluate import (
    EvalReport,
    StemScore,
    align,
    evaluate_folders,
)
from stemsplit.stem_folders import find_tracks

RATE = 8000
N = 8000  # one second: whole periods of every sine below, so energies are exact


def _sine(cycles: int, phase: float = 0.0) -> np.ndarray:
    t = np.arange(N) / N
    return np.sin(2 * np.pi * cycles * t + phase)


def _stereo(c1: int, c2: int) -> np.ndarray:
    return np.stack([_sine(c1), _sine(c2, 0.3)])


def test_usdr_closed_form_additive_noise() -> None:
    # Sines of different whole frequencies are orthogonal: sum(s^2) = N/2 per channel.
    reference = _stereo(5, 7)
    noise = 0.1 * _stereo(11, 13)
    expected = 10 * np.log10(1 / 0.01)  # energy ratio 1 : 0.01 -> 20 dB
    assert metrics.usdr(reference, reference + noise) == pytest.approx(expected, abs=1e-6)
    # Scaled estimate: error (1 - 0.5) s -> 10 log10(1 / 0.25) dB.
    assert metrics.usdr(reference, 0.5 * reference) == pytest.approx(
        10 * np.log10(4), abs=1e-6
    )


def test_usdr_sums_over_channels_before_the_ratio() -> None:
    # A perfect left channel and a zero right channel: (N/2 + N/2) / (N/2) -> 3.01 dB,
    # not the mean of per-channel values (which would be infinite).
    reference = _stereo(5, 7)
    estimate = reference.copy()
    estimate[1] = 0
    assert metrics.usdr(reference, estimate) == pytest.approx(10 * np.log10(2), abs=1e-6)


def test_usdr_perfect_estimate_is_epsilon_bounded() -> None:
    reference = _stereo(5, 7)
    energy = float(np.sum(reference**2))
    expected = 10 * np.log10((energy + 1e-8) / 1e-8)
    assert metrics.usdr(reference, reference) == pytest.approx(expected, abs=1e-9)
    assert metrics.usdr(np.zeros((2, 10)), np.zeros((2, 10))) == 0.0


def test_si_sdr_closed_form_and_scale_invariance() -> None:
    reference = _stereo(5, 7)
    noise = 0.1 * _stereo(11, 13)  # orthogonal to the reference
    estimate = 0.5 * reference + noise
    # alpha = 0.5, target = 0.5 s, residual = noise: 10 log10(0.25 / 0.01) per channel.
    expected = 10 * np.log10(25)
    channels = metrics.si_sdr_channels(reference, estimate)
    assert channels == pytest.approx([expected, expected], abs=1e-6)
    assert metrics.si_sdr(reference, estimate) == pytest.approx(expected, abs=1e-6)
    assert metrics.si_sdr(reference, 3 * estimate) == pytest.approx(expected, abs=1e-6)
    # uSDR is not scale invariant: the same estimate scores lower.
    assert metrics.usdr(reference, estimate) < expected - 5


def test_si_sdr_is_the_mean_of_channel_values() -> None:
    reference = _stereo(5, 7)
    estimate = reference + np.stack([0.1 * _sine(11), 0.3 * _sine(13)])
    left, right = 10 * np.log10(1 / 0.01), 10 * np.log10(1 / 0.09)
    assert metrics.si_sdr(reference, estimate) == pytest.approx((left + right) / 2, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise_level", [0.01, 0.3, 3.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_metrics_match_torchmetrics(seed: int, noise_level: float, dtype: type) -> None:
    torchmetrics_audio = pytest.importorskip("torchmetrics.functional.audio")
    import torch

    rng = np.random.default_rng(seed)
    channels, samples = 2, 5000 + 1000 * seed
    reference = rng.standard_normal((channels, samples)).astype(dtype)
    estimate = (0.8 * reference + noise_level * rng.standard_normal((channels, samples)))
    estimate = estimate.astype(dtype)
    ref64, est64 = (torch.from_numpy(a.astype(np.float64)) for a in (reference, estimate))

    expected = torchmetrics_audio.scale_invariant_signal_distortion_ratio(
        est64, ref64, zero_mean=False
    ).numpy()
    np.testing.assert_allclose(metrics.si_sdr_channels(reference, estimate), expected, atol=1e-4)
    assert metrics.si_sdr(reference, estimate) == pytest.approx(expected.mean(), abs=1e-4)

    # uSDR = torchmetrics' SNR (zero_mean=False) over channels and samples together.
    snr = torchmetrics_audio.signal_noise_ratio(est64.reshape(-1), ref64.reshape(-1))
    assert metrics.usdr(reference, estimate) == pytest.approx(float(snr), abs=1e-4)


def test_shape_mismatch_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="same shape"):
        metrics.usdr(np.zeros((2, 10)), np.zeros((2, 11)))


def test_align_crops_small_differences_and_rejects_large_ones() -> None:
    reference, estimate = np.ones((2, 1000)), np.ones((2, 990))
    ref, est, cropped = align(reference, estimate, samplerate=1000, max_difference_seconds=0.05)
    assert (ref.shape, est.shape, cropped) == ((2, 990), (2, 990), 10)
    with pytest.raises(InputError, match="same track"):
        align(reference, np.ones((2, 900)), samplerate=1000, max_difference_seconds=0.05)


def test_aggregate_mean_and_median_over_tracks() -> None:
    report = EvalReport(scores=[
        StemScore("a", "vocals", 1.0, 2.0), StemScore("a", "bass", 3.0, 4.0),
        StemScore("b", "vocals", 5.0, 6.0), StemScore("b", "bass", 7.0, 8.0),
        StemScore("c", "vocals", 12.0, 0.0),
    ])
    table = report.aggregate()
    assert table["vocals"]["usdr"] == {"mean": 6.0, "median": 5.0, "tracks": 3}
    assert table["bass"]["si_sdr"]["mean"] == 6.0
    # "all": each track's mean over its stems (2, 6, 12), then over tracks.
    assert table["all"]["usdr"]["mean"] == pytest.approx(20 / 3)
    assert table["all"]["usdr"]["median"] == 6.0
    assert report.metric_names() == ["usdr", "si_sdr"]
    rows = report.csv_rows()
    assert len(rows) == 5 + 2 * 3
    assert {"track": "median", "stem": "vocals", "usdr": 5.0, "si_sdr": 2.0} in rows


def _write(folder: Path, stem: str, audio: np.ndarray, ext: str = "wav") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{ext}"
    subtype = "FLOAT" if ext == "wav" else "PCM_24"
    sf.write(path, audio.T.astype(np.float32), RATE, subtype=subtype)
    return path


def test_find_tracks_skips_mixture_containers_and_hidden_files(tmp_path: Path) -> None:
    _write(tmp_path / "set" / "song1", "vocals", _stereo(3, 4))
    _write(tmp_path / "set" / "song1", "mixture", _stereo(3, 4))
    _write(tmp_path / "set" / "song2", "bass", _stereo(3, 4), "flac")
    (tmp_path / "set" / "song2" / "x.stem.mp4").write_bytes(b"")
    (tmp_path / "set" / "song2" / ".hidden.wav").write_bytes(b"")
    (tmp_path / "set" / "song2" / "notes.txt").write_text("x")
    tracks = find_tracks(tmp_path / "set")
    assert {name: sorted(stems) for name, stems in tracks.items()} == {
        "song1": ["mixture", "vocals"], "song2": ["bass"],
    }
    _write(tmp_path / "set" / "other" / "song1", "drums", _stereo(3, 4))
    with pytest.raises(UsageError, match="two track folders named 'song1'"):
        find_tracks(tmp_path / "set")
    with pytest.raises(InputError, match="no such folder"):
        find_tracks(tmp_path / "absent")


def test_evaluate_folders_scores_matches_and_reports_the_rest(tmp_path: Path) -> None:
    vocals, bass = _stereo(5, 7), 0.5 * _stereo(9, 3)
    for track in ("t1", "t2"):
        _write(tmp_path / "ref" / track, "vocals", vocals)
        _write(tmp_path / "ref" / track, "bass", bass)
        _write(tmp_path / "ref" / track, "mixture", vocals + bass)
    _write(tmp_path / "ref" / "t3", "vocals", vocals)  # no estimates for t3
    _write(tmp_path / "est" / "model" / "t1", "vocals", vocals + 0.1 * _stereo(11, 13))
    _write(tmp_path / "est" / "model" / "t1", "drums", bass)  # no reference drums
    # t2: 40 samples short (cropped with a warning), and no bass estimate.
    _write(tmp_path / "est" / "model" / "t2", "vocals", vocals[:, :-40])

    report = evaluate_folders(tmp_path / "est", tmp_path / "ref", bsseval=False)
    scores = {(s.track, s.stem): s for s in report.scores}
    assert sorted(scores) == [("t1", "vocals"), ("t2", "vocals")]
    assert scores["t1", "vocals"].usdr == pytest.approx(20.0, abs=1e-4)  # float32 files
    assert scores["t2", "vocals"].cropped_samples == 40
    assert scores["t2", "vocals"].usdr > 100
    assert any("differ by 40 samples" in w for w in report.warnings)
    assert report.missing == [
        {"track": "t1", "stem": "bass", "missing_from": "estimates"},
        {"track": "t1", "stem": "drums", "missing_from": "references"},
        {"track": "t2", "stem": "bass", "missing_from": "estimates"},
        {"track": "t3", "stem": None, "missing_from": "estimates"},
    ]


def test_single_folders_pair_whatever_their_names(tmp_path: Path) -> None:
    _write(tmp_path / "mine", "vocals", _stereo(5, 7))
    _write(tmp_path / "theirs", "vocals", 0.5 * _stereo(5, 7))
    report = evaluate_folders(tmp_path / "mine", tmp_path / "theirs", bsseval=False)
    assert [(s.track, s.stem) for s in report.scores] == [("theirs", "vocals")]
    # mine = 2 x theirs: error = theirs -> 0 dB.
    assert report.scores[0].usdr == pytest.approx(0.0, abs=1e-5)


def test_no_matching_stem_is_a_usage_error(tmp_path: Path) -> None:
    _write(tmp_path / "a", "vocals", _stereo(5, 7))
    _write(tmp_path / "b", "drums", _stereo(5, 7))
    with pytest.raises(UsageError, match="no stem matches"):
        evaluate_folders(tmp_path / "a", tmp_path / "b", bsseval=False)


def test_evaluate_model_separates_each_mixture(tmp_path: Path) -> None:
    """The real api.separate with the pipeline tests' band-split model on a 2-track set."""
    pytest.importorskip("torch")
    from band_model import band_bundle  # tests/pipeline: a deterministic filter model

    rng = np.random.default_rng(0)
    kernel = np.full(9, 1 / 9)
    for track in ("one", "two"):
        mix = 0.3 * rng.standard_normal((2, 2 * RATE))
        low = np.stack([np.convolve(c, kernel, mode="same") for c in mix])
        _write(tmp_path / "data" / track, "mixture", mix)
        _write(tmp_path / "data" / track, "low", low)
        _write(tmp_path / "data" / track, "vocals", mix)
    from stemsplit.api import evaluate_model

    report = evaluate_model(tmp_path / "data", model=band_bundle(samplerate=RATE),
                            save_stems=tmp_path / "stems", bsseval=False)
    assert sorted((s.track, s.stem) for s in report.scores) == [("one", "low"), ("two", "low")]
    for score in report.scores:
        assert score.usdr > 60, score  # float32 files: the model is this exact filter
    assert sorted(m["missing_from"] for m in report.missing) == ["estimates"] * 2 + [
        "references"
    ] * 2  # vocals not produced; high not in the references
    assert (tmp_path / "stems" / "bandsplit" / "one" / "low.wav").is_file()
