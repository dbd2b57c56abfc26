"""Freeze MSST's own metric values for the fixed test signals (not part of the package).

Usage: PYTHONPATH=DEPS python tools/msst_metrics_fixture.py --msst DIR [--out FILE]

DIR is a work tree of ZFTurbo/Music-Source-Separation-Training (commit ccc011a:
`git archive HEAD | tar -x -C /tmp/msst`); its `utils/metrics.py::get_metrics` is called
on each case of tests/metrics_arrays.py (reference, estimate; the mixture argument only
feeds log_wmse). DEPS holds what that file imports beyond the venv (librosa and scipy
are in it): `pip install --no-deps --target DEPS auraloss torchaudio==2.11.1
torch-log-wmse==0.3.1`; torchaudio is used only for its pure-Python
`transforms.AmplitudeToDB` (and torch-log-wmse imports `transforms.Resample`, unused at
44.1 kHz), so its compiled libraries (`DEPS/torchaudio/lib/*.so`, built for another torch)
may be deleted.

log_wmse: MSST's `LogWMSE_metric(reference, estimate, mixture)` on each case of
`log_wmse_cases()`. MSST builds `LogWMSE(audio_length=..., return_as_loss=False,
bypass_filter=False)`, arguments torch-log-wmse removed in 1.0.0: its call runs only with
the 0.3.x releases, hence 0.3.1 (the last one). A few taps of that release's filter are
frozen too.

Writes tests/data/msst_metrics.json: {case: {metric: value}}, {case: log_wmse} and where
they came from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from metrics_arrays import cases, log_wmse_cases  # noqa: E402 (tests/ on the path first)

METRICS = ["sdr", "k_sdr", "si_sdr", "l1_freq", "aura_stft", "aura_mrstft", "bleedless",
           "fullness"]  # fmt: skip
FILTER_TAPS = (0, 1, 500, 1000, 1500, 1990, 1998, 1999, 2000, 2001, 2500, 3000, 3999)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msst", type=Path, required=True, help="MSST work tree")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/data/msst_metrics.json")
    args = parser.parse_args()
    sys.path.insert(0, str(args.msst))
    from utils.metrics import LogWMSE_metric, get_metrics, k_sdr, sdr

    torch.set_num_threads(1)
    values = {}
    for name, (reference, estimate) in cases().items():
        mix = reference + estimate
        others = [m for m in METRICS if m not in ("sdr", "k_sdr")]
        result = get_metrics(others, reference.copy(), estimate.copy(), mix, device="cpu")
        # get_metrics' own `float(sdr(...))` fails on numpy 2 (a 1-element array): the same
        # two calls, indexed.
        usdr = float(sdr(reference[None], estimate[None])[0])
        result.update({"sdr": usdr, "k_sdr": k_sdr(usdr, 10)})
        values[name] = {key: float(value) for key, value in result.items()}
        print(name, values[name])
    log_wmse = {}
    for name, (reference, estimate, mixture) in log_wmse_cases().items():
        log_wmse[name] = LogWMSE_metric(reference.copy(), estimate.copy(), mixture.copy())
        print(name, "log_wmse", log_wmse[name])
    import auraloss
    import librosa
    import torch_log_wmse
    from torch_log_wmse.freq_weighting_filter import HumanHearingSensitivityFilter

    taps = HumanHearingSensitivityFilter(audio_length=1).impulse_response.numpy()

    commit = subprocess.run(["git", "log", "-1", "--format=%H"], cwd=args.msst,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    data = {
        "generator": "tools/msst_metrics_fixture.py",
        "msst": "utils/metrics.py::get_metrics(metrics, reference, estimate, mix, 'cpu'); "
                "sdr and k_sdr by its sdr() and k_sdr() (get_metrics' float() of a 1-element "
                "array fails on numpy 2)",
        "msst_commit": commit or "ccc011abf7f89dd7922bb2888d48493b575c0289",
        "versions": {"torch": torch.__version__, "librosa": librosa.__version__,
                     "auraloss": getattr(auraloss, "__version__", "0.4.0"),
                     "torch_log_wmse": getattr(torch_log_wmse, "__version__", "0.3.1"),
                     "numpy": np.__version__},  # fmt: skip
        "signals": "tests/metrics_arrays.py::cases() and ::log_wmse_cases()",
        "values": values,
        "log_wmse": log_wmse,
        "log_wmse_filter_taps": {str(i): float(taps[i]) for i in FILTER_TAPS},
    }
    args.out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
