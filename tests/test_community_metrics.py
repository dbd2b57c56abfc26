"""The community metrics (bleedless, fullness, l1_freq, MSST's si_sdr, k_sdr, aura_stft,
aura_mrstft) against MSST's own `utils/metrics.py`: its values for the fixed signals of
metrics_arrays.py were frozen into data/msst_metrics.json by
tools/msst_metrics_fixture.py (MSST ccc011a, torch, librosa, auraloss, torchaudio's
AmplitudeToDB). Checked on the functions and through `stemsplit eval` (table, --json,
--csv)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from cli_run import stemsplit
from metrics_arrays import RATE, cases

from stemsplit import community_metrics as community
from stemsplit import metrics
from stemsplit.evaluate import DEFAULT_METRICS, check_metrics

FROZEN = json.loads((Path(__file__).parent / "data" / "msst_metrics.json").read_text())["values"]
CASES = cases()
# MSST runs float32 torch, these float64 numpy: the SDRs and spectral losses agree to
# ~1e-5; bleedless/fullness average dB differences whose sign float32 rounding decides
# where the estimate nearly equals the reference, so they get the 0.01.
TOLERANCE = {"sdr": 1e-4, "k_sdr": 1e-4, "si_sdr": 1e-4, "l1_freq": 1e-4, "aura_stft": 1e-4,
             "aura_mrstft": 1e-3, "bleedless": 0.01, "fullness": 0.01}  # fmt: skip


def _ours(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    usdr = metrics.usdr(reference, estimate)
    bleedless, fullness = community.bleedless_fullness(reference, estimate)
    return {
        "sdr": usdr, "k_sdr": community.k_sdr(usdr),
        "si_sdr": community.msst_si_sdr(reference, estimate),
        "l1_freq": community.l1_freq(reference, estimate),
        "aura_stft": community.aura_stft(reference, estimate),
        "aura_mrstft": community.aura_mrstft(reference, estimate),
        "bleedless": bleedless, "fullness": fullness,
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_metric_matches_msst(case: str) -> None:
    reference, estimate = CASES[case]
    ours = _ours(reference, estimate)
    for name, expected in FROZEN[case].items():
        assert ours[name] == pytest.approx(expected, abs=TOLERANCE[name]), (case, name)


def test_the_cases_exercise_the_metrics() -> None:
    """Not trivial: k_sdr below its ceiling somewhere, bleed and dullness tell apart."""
    assert min(v["k_sdr"] for v in FROZEN.values()) < 95
    assert FROZEN["bleeding"]["bleedless"] < FROZEN["bleeding"]["fullness"]
    assert FROZEN["dull"]["fullness"] < FROZEN["dull"]["bleedless"]


def test_msst_si_sdr_is_not_the_usual_si_sdr() -> None:
    """MSST scales both channels by one factor: a channel's own gain error counts there,
    not in the per-channel SI-SDR."""
    reference, _ = CASES["close"]
    estimate = reference * np.array([[0.5], [1.0]], dtype=np.float32)
    assert metrics.si_sdr(reference, estimate) > 100
    assert community.msst_si_sdr(reference, estimate) < 10


def test_a_perfect_estimate() -> None:
    reference, _ = CASES["close"]
    bleedless, fullness = community.bleedless_fullness(reference, reference)
    assert (bleedless, fullness) == (100.0, 100.0)
    assert community.l1_freq(reference, reference) == 100.0
    assert community.k_sdr(metrics.usdr(reference, reference)) == 100.0


def test_metric_selection() -> None:
    assert check_metrics(None) == DEFAULT_METRICS
    assert check_metrics(["fullness", "usdr"]) == ("usdr", "fullness")  # table order
    assert "aura_mrstft" in check_metrics(["all"])
    with pytest.raises(Exception, match="use any of"):
        check_metrics(["fulness"])


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """Estimates and references as tracks of float WAV stems (exactly the arrays)."""
    for side, index in (("est", 1), ("ref", 0)):
        for case in ("bleeding", "dull"):
            folder = tmp_path / side / case
            folder.mkdir(parents=True)
            soundfile.write(folder / "vocals.wav", CASES[case][index].T, RATE, subtype="FLOAT")
    return tmp_path / "est", tmp_path / "ref"


def test_eval_reports_msst_metrics(tmp_path: Path) -> None:
    estimates, references = _folders(tmp_path)
    names = "bleedless,fullness,l1_freq,msst_si_sdr"
    result = stemsplit("eval", estimates, references, "--metrics", names, "--metrics", "k_sdr",
                       "--json", "--csv", tmp_path / "scores.csv")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["metrics"] == ["msst_si_sdr", "k_sdr", "l1_freq", "bleedless", "fullness"]
    assert {s["track"] for s in data["scores"]} == {"bleeding", "dull"}
    for score in data["scores"]:
        frozen = FROZEN[score["track"]]
        assert abs(score["bleedless"] - frozen["bleedless"]) < 0.01
        assert abs(score["fullness"] - frozen["fullness"]) < 0.01
        assert abs(score["l1_freq"] - frozen["l1_freq"]) < 0.01
        assert abs(score["msst_si_sdr"] - frozen["si_sdr"]) < 0.01
        assert abs(score["k_sdr"] - frozen["k_sdr"]) < 0.01
        assert "si_sdr" not in score and "usdr" not in score  # only what was asked
    rows = list(csv.DictReader(open(tmp_path / "scores.csv", encoding="utf-8")))
    bleeding = next(r for r in rows if r["track"] == "bleeding")
    assert abs(float(bleeding["fullness"]) - FROZEN["bleeding"]["fullness"]) < 0.01
    assert {"mean", "median"} <= {r["track"] for r in rows}

    table = stemsplit("eval", estimates, references, "--metrics", "bleedless,fullness,usdr")
    assert table.returncode == 0, table.stderr
    assert "bleedless" in table.stdout and "fullness" in table.stdout and "uSDR" in table.stdout
    assert f"{FROZEN['dull']['fullness']:.3f}" in table.stdout


def test_eval_refuses_an_unknown_metric(tmp_path: Path) -> None:
    estimates, references = _folders(tmp_path)
    result = stemsplit("eval", estimates, references, "--metrics", "fulness")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "fulness" in line and "bleedless" in line
