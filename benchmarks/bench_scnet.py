"""SCNet (MSST's released small config) vs HTDemucs (released config), both stemsplit's.

Same input (real music looped to --seconds), random weights (speed and memory do not
depend on their values), each through stemsplit's engine with its own reference recipe
(SCNet: MSST demix with the config's 11 s chunks, num_overlap 4, batch 8, track
normalisation; HTDemucs: demucs' apply_model, 7.8 s segments, overlap 0.25, no shifts).
Every run is a fresh subprocess (so its peak RSS is its own), the two models alternate
(the machine may be shared: pairs taken close together compare fairly), and the
medians and the SCNet/HTDemucs time ratio are printed with the CPU.

    python benchmarks/bench_scnet.py --seconds 30 --repeats 3 --threads 2

`--overlap N` also times SCNet with num_overlap N (e.g. 2, the common inference choice).
`--in-process` builds each model once in this process and alternates them round after
round (best of --repeats each; for a shared, noisy machine), then also times one chunk
forward of each model (SCNet's 11 s chunk, HTDemucs' segment, batch 1) per second of
audio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from common import cpu_line, exit_on_sigterm, music, worker_result, write_demucs_checkpoint

if TYPE_CHECKING:
    from stemsplit.zoo.loader import ModelBundle

ROOT = Path(__file__).resolve().parents[1]
SCNET_CONFIG = ROOT / "weights" / "configs" / "config_musdb18_scnet.yaml"


def _model(kind: str, folder: Path, num_overlap: int | None) -> ModelBundle:
    import torch

    torch.manual_seed(0)
    if kind == "htdemucs":
        from stemsplit.zoo.loader import load_bundle

        return load_bundle(checkpoint=folder / "htdemucs.th")
    from stemsplit.models.scnet import build_scnet
    from stemsplit.zoo.loader import ModelBundle
    from stemsplit.zoo.safe_yaml import load_yaml

    config = load_yaml(SCNET_CONFIG)
    if num_overlap:
        config["inference"]["num_overlap"] = num_overlap
    model = build_scnet("scnet", config).eval()
    return ModelBundle(name="scnet", sources=list(model.sources), members=[model],
                       weights=[[1.0] * len(model.sources)], residual=None,
                       samplerate=model.samplerate, card=None)  # fmt: skip


def _separate(bundle: ModelBundle, mix: np.ndarray) -> float:
    from stemsplit.engine.pipeline import bundle_stream
    from stemsplit.engine.source import ArraySource
    from stemsplit.options import EngineSettings

    started = time.perf_counter()
    settings = EngineSettings(device="cpu", shifts=0)
    blocks = bundle_stream(bundle, ArraySource(mix, 44100), set(bundle.sources), settings, {})
    np.concatenate(list(blocks), axis=-1)
    return time.perf_counter() - started


def in_process(args: argparse.Namespace, runs: list[tuple[str, int | None]]) -> None:
    import torch

    torch.set_num_threads(args.threads)
    mix = music(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_demucs_checkpoint(folder / "htdemucs.th")
        bundles = {(kind, overlap): _model(kind, folder, overlap) for kind, overlap in runs}
    best: dict[str, float] = {}
    with torch.inference_mode():
        for repeat in range(args.repeats):
            for (kind, overlap), bundle in bundles.items():
                label = kind + (f" (num_overlap {overlap})" if overlap else "")
                seconds = _separate(bundle, mix)
                best[label] = min(best.get(label, seconds), seconds)
                print(f"round {repeat + 1} {label:<26} {seconds:7.2f} s wall", flush=True)
        print(f"\n{args.seconds:.0f} s of stereo 44.1 kHz, {args.threads} threads, in one "
              "process; best of each:")  # fmt: skip
        for label, value in best.items():
            print(f"  {label:<26} {value:7.2f} s  ({value / best['htdemucs']:.0%} of HTDemucs; "
                  f"real-time factor {value / args.seconds:.3f})")  # fmt: skip
        chunk: dict[str, float] = {}
        for _ in range(args.repeats):
            for kind in ("scnet", "htdemucs"):
                model = bundles[(kind, None)].members[0]
                samples = model.recipe.segment_samples
                audio = torch.randn(1, 2, samples)
                started = time.perf_counter()
                model(audio)
                per_second = (time.perf_counter() - started) / (samples / 44100)
                chunk[kind] = min(chunk.get(kind, per_second), per_second)
    print(
        f"model only, one chunk at batch 1, per second of audio: SCNet {chunk['scnet']:.3f} s, "
        f"HTDemucs {chunk['htdemucs']:.3f} s ({chunk['scnet'] / chunk['htdemucs']:.0%})"
    )


def worker(kind: str, folder: Path, seconds: float, threads: int, num_overlap: int | None) -> None:
    import torch

    from stemsplit.engine.pipeline import bundle_stream
    from stemsplit.engine.source import ArraySource
    from stemsplit.options import EngineSettings

    torch.set_num_threads(threads)
    bundle = _model(kind, folder, num_overlap)
    mix = music(seconds)
    started, cpu_started = time.perf_counter(), time.process_time()
    settings = EngineSettings(device="cpu", shifts=0)
    blocks = bundle_stream(bundle, ArraySource(mix, 44100), set(bundle.sources), settings, {})
    out = np.concatenate(list(blocks), axis=-1)
    result = worker_result(kind, out[:, :, :44100], folder / f"{kind}.npy", started, cpu_started)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--overlap", type=int, default=None, help="also SCNet at this num_overlap")
    parser.add_argument("--in-process", action="store_true",
                        help="one process, models built once and alternated")  # fmt: skip
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--num-overlap", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from stemsplit.api import keep_large_blocks_on_heap

    keep_large_blocks_on_heap()  # both models are ours: as `stemsplit separate` runs them
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), args.seconds, args.threads, args.num_overlap)
        return
    exit_on_sigterm()
    print(cpu_line())
    runs: list[tuple[str, int | None]] = [("scnet", None), ("htdemucs", None)]
    if args.overlap:
        runs.append(("scnet", args.overlap))
    if args.in_process:
        in_process(args, runs)
        return
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_demucs_checkpoint(folder / "htdemucs.th")
        for repeat in range(args.repeats):
            for kind, num_overlap in runs:
                command = [sys.executable, __file__, "--worker", kind, str(folder),
                           "--seconds", str(args.seconds), "--threads", str(args.threads)]  # fmt: skip
                if num_overlap:
                    command += ["--num-overlap", str(num_overlap)]
                env = {"OMP_NUM_THREADS": str(args.threads)}
                done = subprocess.run(command, capture_output=True, text=True, check=True,
                                      env={**os.environ, **env})  # fmt: skip
                result = json.loads(done.stdout.strip().splitlines()[-1])
                label = kind + (f" (num_overlap {num_overlap})" if num_overlap else "")
                times.setdefault(label, []).append(result["seconds"])
                print(f"run {repeat + 1} {label:<26} {result['seconds']:7.2f} s wall  "
                      f"{result['cpu_seconds']:7.2f} s cpu  {result['peak_rss_mb']:7.0f} MB peak RSS",
                      flush=True)  # fmt: skip
    print(f"\n{args.seconds:.0f} s of stereo 44.1 kHz, {args.threads} threads; medians:")
    base = statistics.median(times["htdemucs"])
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:<26} {median:7.2f} s  ({median / base:.0%} of HTDemucs; "
              f"real-time factor {median / args.seconds:.3f})")  # fmt: skip


if __name__ == "__main__":
    main()
