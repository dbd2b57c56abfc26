"""`stemsplit eval` through the real command on the carried MUSDB clip (tests/fixtures/music)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from carried import MUSIC, TRACK, fixture

from stemsplit.community_metrics import log_wmse

REPO = Path(__file__).resolve().parents[1]
CONV_TASNET = fixture("conv_tasnet") / "model.th"
STEMS = ["bass", "drums", "other", "vocals"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A track folder of the clip's mixture and four stems (FLAC; the .stem.mp4 left out)."""
    folder = tmp_path_factory.mktemp("eval") / "musdb-sample"
    folder.mkdir()
    for name in ["mixture", *STEMS]:
        (folder / f"{name}.flac").symlink_to(MUSIC / f"{name}.flac")
    return folder


def _eval(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stemsplit", "eval", *map(str, args)],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )


def _read(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0].T.astype(np.float64)


def _usdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    num = np.sum(reference**2) + 1e-8
    return float(10 * np.log10(num / (np.sum((reference - estimate) ** 2) + 1e-8)))


def _si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    eps = np.finfo(np.float64).eps
    values = []
    for ref, est in zip(reference, estimate):
        target = (np.dot(est, ref) + eps) / (np.dot(ref, ref) + eps) * ref
        values.append(10 * np.log10((np.sum(target**2) + eps) / (np.sum((target - est) ** 2) + eps)))
    return float(np.mean(values))


def _mixture_as_every_stem(sample: Path, folder: Path) -> Path:
    folder.mkdir()
    for stem in STEMS:
        (folder / f"{stem}.flac").symlink_to(sample / "mixture.flac")
    return folder


def test_references_against_themselves_score_the_epsilon_bound(sample: Path) -> None:
    result = _eval(sample, sample, "--json", "--no-bsseval")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(s["stem"] for s in report["scores"]) == STEMS  # mixture is not a stem
    for score in report["scores"]:
        energy = np.sum(_read(sample / f"{score['stem']}.flac") ** 2)
        assert score["usdr"] == pytest.approx(10 * np.log10(energy / 1e-8 + 1), abs=1e-6)
        assert score["usdr"] > 100 and score["si_sdr"] > 100
    assert report["missing"] == [] and report["failed"] == []


def test_mixture_as_every_stem_matches_numpy(sample: Path, tmp_path: Path) -> None:
    estimates = _mixture_as_every_stem(sample, tmp_path / "mixture-everywhere")
    result = _eval(estimates, sample, "--json", "--no-bsseval", "--csv", tmp_path / "s.csv")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    mixture = _read(sample / "mixture.flac")
    expected = {}
    for stem in STEMS:
        reference = _read(sample / f"{stem}.flac")
        expected[stem] = (_usdr(reference, mixture), _si_sdr(reference, mixture))
    got = {s["stem"]: (s["usdr"], s["si_sdr"]) for s in report["scores"]}
    assert got.keys() == expected.keys()
    for stem in STEMS:
        np.testing.assert_allclose(got[stem], expected[stem], atol=1e-6)
        assert got[stem][0] < 0  # the mixture is a poor estimate of any one stem
    mean_usdr = np.mean([expected[s][0] for s in STEMS])
    assert report["aggregate"]["all"]["usdr"]["mean"] == pytest.approx(mean_usdr, abs=1e-6)

    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    vocals = next(r for r in rows if r["stem"] == "vocals" and r["track"] == "musdb-sample")
    assert float(vocals["usdr"]) == pytest.approx(expected["vocals"][0], abs=1e-6)
    assert {r["track"] for r in rows} == {"musdb-sample", "mean", "median"}


def test_table_output_and_missing_stems(sample: Path, tmp_path: Path) -> None:
    estimates = tmp_path / "est"
    estimates.mkdir()
    (estimates / "vocals.flac").symlink_to(sample / "vocals.flac")
    (estimates / "piano.flac").symlink_to(sample / "other.flac")
    result = _eval(estimates, sample, "--no-bsseval")
    assert result.returncode == 0, result.stderr
    assert "vocals" in result.stdout and "uSDR" in result.stdout and "SI-SDR" in result.stdout
    assert "musdb-sample/piano is missing from references" in result.stderr
    assert "musdb-sample/drums is missing from estimates" in result.stderr


def test_small_length_difference_is_cropped_large_is_an_error(
    sample: Path, tmp_path: Path
) -> None:
    vocals, rate = sf.read(sample / "vocals.flac", dtype="float32")
    short = tmp_path / "short"
    short.mkdir()
    sf.write(short / "vocals.wav", vocals[:-100], rate, subtype="FLOAT")
    result = _eval(short, sample, "--json", "--no-bsseval")
    assert result.returncode == 0, result.stderr
    assert "differ by 100 samples" in result.stderr
    (score,) = json.loads(result.stdout)["scores"]
    assert score["cropped_samples"] == 100
    assert score["usdr"] > 100  # the first n - 100 samples are identical

    sf.write(short / "vocals.wav", vocals[: rate * 2], rate, subtype="FLOAT")
    result = _eval(short, sample, "--no-bsseval")
    assert result.returncode == 1
    assert "same track" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ONE"], 2, "ESTIMATES REFERENCES"),
        (["missing-folder", "SAMPLE"], 1, "no such folder"),
        (["--save-stems", "x", "SAMPLE", "SAMPLE"], 2, "--save-stems"),
        (["--model", "htdemucs", "SAMPLE", "SAMPLE"], 2, "one DATASET"),
    ],
)
def test_usage_errors_are_one_line(
    sample: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    args = [str(sample) if a == "SAMPLE" else str(tmp_path / a) if "missing" in a else a
            for a in args]
    result = _eval(*args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_matching_stem_is_a_usage_error(sample: Path, tmp_path: Path) -> None:
    estimates = tmp_path / "est"
    estimates.mkdir()
    (estimates / "piano.flac").symlink_to(sample / "other.flac")
    result = _eval(estimates, sample)
    assert result.returncode == 2
    assert "no stem matches" in result.stderr


def _museval():
    try:
        import museval
    except ImportError:
        pytest.skip("museval is not installed (optional: pip install museval)")
    except Exception as err:  # musdb/stempeg refuse to import without ffmpeg
        pytest.skip(f"museval cannot be imported here: {str(err).splitlines()[0]}")
    return museval


def test_bsseval_matches_museval(sample: Path, tmp_path: Path) -> None:
    museval = _museval()
    stems = ["bass", "vocals"]  # two stems keep museval's run short
    estimates = tmp_path / "est"
    estimates.mkdir()
    for stem in stems:
        (estimates / f"{stem}.flac").symlink_to(sample / "mixture.flac")
    references = tmp_path / "ref"
    references.mkdir()
    for stem in stems:
        (references / f"{stem}.flac").symlink_to(sample / f"{stem}.flac")
    result = _eval(estimates, references, "--json", "--bsseval")
    assert result.returncode == 0, result.stderr
    got = {s["stem"]: s["bss_sdr"] for s in json.loads(result.stdout)["scores"]}

    mixture = _read(sample / "mixture.flac").T
    refs = np.stack([_read(sample / f"{stem}.flac").T for stem in stems])
    sdr, _, _, _ = museval.evaluate(refs, np.stack([mixture] * len(stems)))
    for stem, frames in zip(stems, sdr):
        assert got[stem] == pytest.approx(float(np.nanmedian(frames)), abs=1e-6)


def test_model_mode_with_a_checkpoint(sample: Path, tmp_path: Path) -> None:
    """--checkpoint (a random Conv-TasNet) separates DATASET/<track>/mixture and scores it."""
    pytest.importorskip("torch")
    track = tmp_path / "dataset" / TRACK
    track.mkdir(parents=True)
    for name in ["mixture", *STEMS]:
        (track / f"{name}.flac").symlink_to(sample / f"{name}.flac")
    saved = tmp_path / "saved"
    result = _eval("--checkpoint", CONV_TASNET, tmp_path / "dataset", "--save-stems", saved,
                   "--json", "--no-bsseval", "--device", "cpu", "--metrics", "usdr,si_sdr,log_wmse")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(s["stem"] for s in report["scores"]) == STEMS
    mixture = _read(sample / "mixture.flac")
    for score in report["scores"]:
        assert score["track"] == TRACK
        (estimate_path,) = saved.glob(f"*/{TRACK}/{score['stem']}.wav")
        estimate = _read(estimate_path)
        reference = _read(sample / f"{score['stem']}.flac")
        assert score["usdr"] == pytest.approx(_usdr(reference, estimate), abs=1e-6)
        assert score["si_sdr"] == pytest.approx(_si_sdr(reference, estimate), abs=1e-6)
        # the dataset's mixture.flac reaches log_wmse (its values: test_community_metrics)
        assert score["log_wmse"] == pytest.approx(log_wmse(reference, estimate, mixture), abs=1e-4)
