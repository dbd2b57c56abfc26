"""End to end: the `stemsplit` CLI as a whole process vs demucs' `apply_model` in process.

Our side is everything a user waits for: `stemsplit separate WAV --checkpoint
MODEL.th` in a fresh process (interpreter and torch start-up, checkpoint load,
decode, separation, writing four float WAV stems). demucs' side is only
`apply_model` on a model already built and audio already in memory (with the
track's mean/std normalisation that `demucs.separate` applies), timed inside its
worker process: the reference gets its start-up, load, decode and write for free.

The checkpoint is demucs' own format (`serialize_model`) with the released htdemucs
hyperparameters and random weights (seed 0), the same weights in both; the input is
the MUSDB sample from ../shared looped to --seconds, 16-bit stereo WAV. Runs
alternate (demucs, ours for each precision, demucs, ...). Prints medians and minima,
speed-ups (ratio of medians, median of per-round ratios, ratio of minima: on a shared
machine the minima are the least disturbed runs), SNR of each output against demucs'
and the CPU it ran on. The bar verdict uses the per-round ratio.

    python benchmarks/bench_e2e.py --seconds 30 --repeats 2 --threads 2 --precisions fp32
    python benchmarks/bench_e2e.py --seconds 60 --repeats 2 --precisions fp32,bf16

Bars (issue 19): fp32 >= 1.5x with >= 60 dB SNR; bf16 on 60 s >= 3x demucs fp32 with
>= 35 dB SNR.
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
from common import (
    SOURCES,
    cpu_line,
    demucs_model,
    exit_on_sigterm,
    run_measured,
    snr_db,
    stemsplit_command,
    worker_result,
    write_demucs_checkpoint,
    write_music_wav,
)

BARS = {"fp32": (1.5, 60.0), "bf16": (3.0, 35.0), "int8": (2.0, 25.0)}


def reference_worker(wav: Path, out: Path, threads: int) -> dict:
    """demucs' `apply_model` on the model built and the track in memory, timed."""
    import soundfile as sf
    import torch
    from demucs.apply import apply_model

    torch.set_num_threads(threads)
    model = demucs_model("full")
    audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    mix = torch.from_numpy(audio.T.copy())
    started, cpu_started = time.perf_counter(), time.process_time()
    ref = mix.mean(0)  # demucs.separate's normalisation
    mean, std = ref.mean(), ref.std()
    with torch.no_grad():
        stems = apply_model(model, ((mix - mean) / std)[None], shifts=0, split=True,
                            overlap=0.25, progress=False)[0]  # fmt: skip
    stems = stems * std + mean
    return worker_result("demucs", stems.numpy(), out, started, cpu_started)


def run_ours(wav: Path, checkpoint: Path, out: Path, threads: int, precision: str) -> dict:
    """The CLI in a fresh process: float WAV stems, so the SNR is the model's, not PCM's."""
    command = [*stemsplit_command(), "separate", str(wav), "--checkpoint", str(checkpoint),
               "-o", str(out), "--device", "cpu", "--threads", str(threads), "--precision",
               precision, "--format", "wav", "--bit-depth", "float32", "--overwrite", "-q",
               "-v"]  # fmt: skip
    run = run_measured(command, env={"OMP_NUM_THREADS": str(threads)})
    return {"impl": f"stemsplit-{precision}", "seconds": run["seconds"],
            "peak_rss_mb": run["peak_rss_mb"], "log": run["stderr"][-2000:]}  # fmt: skip


def read_stems(folder: Path) -> np.ndarray:
    """`[S, C, T]` from `folder/**/<stem>.wav` in SOURCES order."""
    import soundfile as sf

    stems = []
    for stem in SOURCES:
        (path,) = folder.rglob(f"{stem}.wav")
        audio, _ = sf.read(path, dtype="float32", always_2d=True)
        stems.append(audio.T)
    return np.stack(stems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep its files")
    parser.add_argument("--reference-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker:
        wav, out = map(Path, args.reference_worker)
        print(json.dumps(reference_worker(wav, out, args.threads)))
        return
    exit_on_sigterm()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        wav = write_music_wav(folder / "mix.wav", args.seconds)
        checkpoint = write_demucs_checkpoint(folder / "htdemucs-random.th", "full")
        runs: dict[str, list[dict]] = {}
        snrs: dict[str, float] = {}
        precisions = args.precisions.split(",")
        for _ in range(args.repeats):
            done = subprocess.run(
                [sys.executable, __file__, "--threads", str(args.threads), "--reference-worker",
                 str(wav), str(folder / "demucs.npy")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs.setdefault("demucs-fp32", []).append(json.loads(done.stdout.splitlines()[-1]))
            print(json.dumps({"variant": "demucs-fp32", **runs["demucs-fp32"][-1]}), flush=True)
            for precision in precisions:
                out = folder / f"out-{precision}"
                result = run_ours(wav, checkpoint, out, args.threads, precision)
                chosen = [line for line in result.pop("log").splitlines() if "precision" in line]
                runs.setdefault(f"stemsplit-{precision}", []).append(result)
                snrs[precision] = snr_db(read_stems(out), np.load(folder / "demucs.npy"))
                print(json.dumps({"variant": f"stemsplit-{precision}", **result,
                                  "snr_db": snrs[precision], "log": chosen[-2:]}), flush=True)  # fmt: skip
        base = statistics.median(r["seconds"] for r in runs["demucs-fp32"])
        # Each of our runs against the demucs run just before it: on a shared machine
        # the load drifts between rounds, so the median of per-round ratios is the
        # figure to quote (the ratio of medians is printed beside it).
        paired = {key: statistics.median(d["seconds"] / r["seconds"]
                                         for d, r in zip(runs["demucs-fp32"], values))
                  for key, values in runs.items()}  # fmt: skip
        print(f"HTDemucs (released config, random weights), {args.seconds:g} s stereo, "
              f"{args.threads} threads, {args.repeats} alternating runs")
        print(cpu_line())
        best = min(r["seconds"] for r in runs["demucs-fp32"])
        print(f"{'variant':16} {'median s':>9} {'min s':>7} {'speed-up':>9} {'per round':>9} "
              f"{'of mins':>7} {'x realtime':>10} {'peak MB':>8} {'SNR vs demucs':>14}  "
              "bar (per round)")
        for key, values in runs.items():
            median = statistics.median(r["seconds"] for r in values)
            precision = key.split("-", 1)[1]
            speed = paired[key]
            bar = ""
            if key != "demucs-fp32" and precision in BARS:
                want_speed, want_snr = BARS[precision]
                met = speed >= want_speed and snrs[precision] >= want_snr
                bar = f"{want_speed}x, {want_snr:g} dB: {'met' if met else 'NOT met'}"
            snr = f"{snrs[precision]:14.1f}" if key != "demucs-fp32" else f"{'-':>14}"
            fastest = min(r["seconds"] for r in values)
            print(f"{key:16} {median:9.2f} {fastest:7.2f} {base / median:9.2f} {speed:9.2f} "
                  f"{best / fastest:7.2f} {args.seconds / median:10.2f} "
                  f"{max(r['peak_rss_mb'] for r in values):8.0f} {snr}  {bar}")


if __name__ == "__main__":
    main()
