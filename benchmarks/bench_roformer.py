"""BS-RoFormer: stemsplit vs audio-separator's implementation, side by side.

Same weights (viperx ep_317 hyperparameters, random init, seed 0; audio-separator's
`BSRoformer` loads stemsplit's state dict, key names are MSST's), same input (real music
looped to --seconds), same chunking: MSST `demix` with the config's chunk_size (8 s),
num_overlap 2 and batch size 4. Our side runs stemsplit's engine; their side runs
audio-separator's network inside MSST's demix loop as restated in
tests/engine/test_chunking.py (the loop the engine is tested against), so only the
networks and the engine differ. Runs alternate; each is a fresh subprocess so its peak
RSS is its own. Prints medians, the speed ratio, real-time factor and the SNR/max abs
difference of our output against theirs.

audio-separator is a benchmark-only dependency; it pulls a CUDA torch, so install it
beside the CPU torch without its dependencies:

    pip install --no-deps audio-separator "rotary-embedding-torch<0.7" "beartype<0.19" \
        einops onnxruntime pydub six resampy samplerate diffq flatbuffers coloredlogs \
        humanfriendly protobuf

(audio-separator pins rotary-embedding-torch 0.6.x: with 0.9 its rotary helper gives a
different function.)
    python benchmarks/bench_roformer.py --seconds 16 --repeats 3 --threads 2

(`--asep-path DIR` puts a `pip install --target DIR` copy on the workers' path instead.)
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

import numpy as np
from common import cpu_line, music, snr_db, worker_result

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT.parent / "shared" / "data" / "configs" / "model_bs_roformer_ep_317_sdr_12.9755.yaml"
RATE = 44100


def load_config(path: Path) -> dict:
    from stemsplit.zoo.safe_yaml import load_yaml

    return load_yaml(path)


def model_config(config: dict, depth: int | None) -> dict:
    """The yaml with `zero_dc: false` (audio-separator 0.47 ignores zero_dc, MSST's
    current code zeroes the DC bin by default: without this the two networks differ by
    ~1e-3) and an optional smaller depth."""
    return {**config, "model": {**config["model"], "zero_dc": False,
                                **({"depth": depth} if depth else {})}}


def ours_model(config: dict, depth: int | None):
    import torch

    from stemsplit.models.roformer import build_roformer

    config = model_config(config, depth)
    torch.manual_seed(0)
    return build_roformer("bs_roformer", config).eval()


def run_one(impl: str, audio_path: Path, out_path: Path, args: argparse.Namespace) -> dict:
    """One timed run in this process (called in a subprocess). Model build excluded."""
    import torch

    if impl != "audio-separator":
        from stemsplit.api import keep_large_blocks_on_heap

        keep_large_blocks_on_heap()  # as `stemsplit separate` does before separating
    torch.set_num_threads(args.threads)
    audio = np.load(audio_path)
    config = load_config(Path(args.config))
    model = ours_model(config, args.depth)
    chunk = config["audio"]["chunk_size"]
    num_overlap = config["inference"]["num_overlap"]
    batch = config["inference"]["batch_size"]
    if impl == "audio-separator":
        from audio_separator.separator.uvr_lib_v5.roformer.bs_roformer import BSRoformer

        sys.path.insert(0, str(ROOT / "tests" / "engine"))
        from test_chunking import msst_demix

        theirs = BSRoformer(**model_config(config, args.depth)["model"]).eval()
        missing, unexpected = theirs.load_state_dict(model.state_dict(), strict=False)
        if missing or unexpected:
            raise SystemExit(f"state dicts differ: missing {missing}, unexpected {unexpected}")
        theirs.sources = model.sources
        started, cpu_started = time.perf_counter(), time.process_time()
        out = msst_demix(theirs, torch.from_numpy(audio), chunk, num_overlap, batch)
    else:
        from stemsplit.engine.runner import EngineSettings, separate_stream
        from stemsplit.engine.source import ArraySource

        started, cpu_started = time.perf_counter(), time.process_time()
        settings = EngineSettings(device="cpu", precision=args.precision)
        out = np.concatenate(list(separate_stream(model, ArraySource(audio, RATE), settings)),
                             axis=-1)
    return worker_result(impl, out, out_path, started, cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--config", default=str(CONFIG), help="MSST yaml (viperx ep_317)")
    parser.add_argument("--depth", type=int, default=0, help="override depth (quick checks)")
    parser.add_argument("--asep-path", default="", help="extra sys.path for audio-separator")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, audio, out = args.worker
        print(json.dumps(run_one(impl, Path(audio), Path(out), args)))
        return
    env = dict(os.environ)
    if args.asep_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.asep_path, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        np.save(folder / "in.npy", music(args.seconds))
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):
            for impl in ("audio-separator", "stemsplit"):
                command = [sys.executable, __file__, "--threads", str(args.threads),
                           "--precision", args.precision, "--config", args.config,
                           "--depth", str(args.depth),
                           "--worker", impl, str(folder / "in.npy"), str(folder / f"{impl}.npy")]
                result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
                if result.returncode:
                    raise SystemExit(f"{impl} run failed:\n{result.stderr[-3000:]}")
                runs.setdefault(impl, []).append(json.loads(result.stdout.splitlines()[-1]))
                print(json.dumps(runs[impl][-1]), flush=True)
        theirs = np.load(folder / "audio-separator.npy")
        ours = np.load(folder / "stemsplit.npy")
        base = statistics.median(r["seconds"] for r in runs["audio-separator"])
        base_cpu = statistics.median(r["cpu_seconds"] for r in runs["audio-separator"])
        depth = f"depth {args.depth}" if args.depth else "viperx ep_317"
        print(f"BS-RoFormer ({depth}), {args.seconds:g} s stereo, {args.threads} threads, "
              f"{args.precision}, {args.repeats} alternating runs")
        print(cpu_line())
        print(f"{'implementation':16} {'median s':>9} {'speed-up':>9} {'x realtime':>10} "
              f"{'CPU s':>7} {'CPU ratio':>9} {'peak MB':>8}")
        for impl, values in runs.items():
            median = statistics.median(r["seconds"] for r in values)
            cpu = statistics.median(r["cpu_seconds"] for r in values)
            print(f"{impl:16} {median:9.2f} {base / median:9.2f} {args.seconds / median:10.2f} "
                  f"{cpu:7.1f} {base_cpu / cpu:9.2f} "
                  f"{max(r['peak_rss_mb'] for r in values):8.0f}")
        print(f"ours vs audio-separator: max abs {np.abs(ours - theirs).max():.2e}, "
              f"SNR {snr_db(ours, theirs):.1f} dB (shapes {ours.shape} / {theirs.shape})")


if __name__ == "__main__":
    main()
