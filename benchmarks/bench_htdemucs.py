"""HTDemucs: stemsplit's engine vs `demucs.apply.apply_model`, side by side.

Same weights (released htdemucs hyperparameters, random init, seed 0), same input
(real music looped to --seconds, or noise without ../shared), shifts 0, overlap
0.25. Runs alternate between the two implementations; each run is a fresh
subprocess so its peak RSS is its own. Prints medians, the speed ratio, the
real-time factor and the SNR of our output against demucs'.

    python benchmarks/bench_htdemucs.py --seconds 60 --repeats 3 --threads 2
    python benchmarks/bench_htdemucs.py --seconds 8 --repeats 1 --precisions fp32,bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import HTDEMUCS_KWARGS, cpu_line, demucs_model, music, snr_db, worker_result


def make_input(path: Path, seconds: float) -> None:
    """Real music looped to `seconds` (noise if the sample is absent)."""
    np.save(path, music(seconds))


def run_one(impl: str, audio_path: Path, out_path: Path, threads: int, precision: str) -> dict:
    """One timed run in this process (called in a subprocess)."""
    import torch

    torch.set_num_threads(threads)
    audio = np.load(audio_path)
    reference = demucs_model("full")
    started, cpu_started = time.perf_counter(), time.process_time()
    if impl == "demucs":
        from demucs.apply import apply_model

        with torch.no_grad():
            out = apply_model(reference, torch.from_numpy(audio)[None], shifts=0, split=True,
                              overlap=0.25, progress=False)[0].numpy()
    else:
        from stemsplit.engine.runner import EngineSettings, separate_stream
        from stemsplit.engine.source import ArraySource
        from stemsplit.models.demucs import build_demucs

        model = build_demucs("HTDemucs", (), dict(HTDEMUCS_KWARGS))
        model.load_state_dict(reference.state_dict(), strict=True)
        # Model build excluded on both sides.
        started, cpu_started = time.perf_counter(), time.process_time()
        settings = EngineSettings(device="cpu", precision=precision)
        out = np.concatenate(list(separate_stream(model, ArraySource(audio, 44100), settings)),
                             axis=-1)
    return worker_result(impl, out, out_path, started, cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, audio, out, precision = args.worker
        print(json.dumps(run_one(impl, Path(audio), Path(out), args.threads, precision)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_input(folder / "in.npy", args.seconds)
        runs: dict[str, list[dict]] = {}
        variants = [("demucs", "fp32")] + [("stemsplit", p) for p in args.precisions.split(",")]
        for _ in range(args.repeats):
            for impl, precision in variants:
                key = f"{impl}-{precision}"
                out = folder / f"{key}.npy"
                result = subprocess.run(
                    [sys.executable, __file__, "--threads", str(args.threads),
                     "--worker", impl, str(folder / "in.npy"), str(out), precision],
                    capture_output=True, text=True, check=True,
                )
                runs.setdefault(key, []).append(json.loads(result.stdout.splitlines()[-1]))
                line = {"variant": key, **runs[key][-1]}
                if impl != "demucs":
                    line["snr_db"] = snr_db(np.load(out), np.load(folder / "demucs-fp32.npy"))
                print(json.dumps(line), flush=True)
        reference = np.load(folder / "demucs-fp32.npy")
        ours_fp32 = np.load(folder / "stemsplit-fp32.npy") if "stemsplit-fp32" in runs else None
        base = statistics.median(r["seconds"] for r in runs["demucs-fp32"])
        print(f"HTDemucs, {args.seconds:.0f} s stereo, {args.threads} threads, "
              f"{args.repeats} alternating runs")
        print(cpu_line())
        base_cpu = statistics.median(r["cpu_seconds"] for r in runs["demucs-fp32"])
        print(f"{'variant':18} {'median s':>9} {'speed-up':>9} {'RTF':>7} {'CPU s':>7} "
              f"{'CPU ratio':>9} {'peak MB':>8} {'SNR vs demucs':>14} {'SNR vs ours fp32':>17}")
        for key, values in runs.items():
            median = statistics.median(r["seconds"] for r in values)
            output = np.load(folder / f"{key}.npy")
            vs_ours = snr_db(output, ours_fp32) if ours_fp32 is not None else float("nan")
            cpu = statistics.median(r["cpu_seconds"] for r in values)
            print(f"{key:18} {median:9.2f} {base / median:9.2f} {args.seconds / median:7.2f} "
                  f"{cpu:7.1f} {base_cpu / cpu:9.2f} {max(r['peak_rss_mb'] for r in values):8.0f} "
                  f"{snr_db(output, reference):14.1f} {vs_ours:17.1f}")


if __name__ == "__main__":
    main()
