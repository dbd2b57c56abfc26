"""Batch throughput: does decoding/encoding beside the model (`--jobs`) pay off?

Makes a small folder of MP3 tracks (the MUSDB sample's mixture, tiled to `--seconds`)
and a randomly initialised Demucs checkpoint (no download), loads it once, then runs
the whole folder with `jobs=0` (decode, separate, encode in one thread) and `jobs=1`,
`jobs=2` (decode ahead in threads, encode in writer threads), alternating the order
round after round on one machine so load drifts hit every setting alike. Outputs FLAC.
Prints the median wall time per setting and the ratio to `jobs=0`.

    python benchmarks/batch_overlap.py [--tracks 6] [--seconds 12] [--rounds 3]
        [--channels 4] [--threads 2]

Needs ../shared/data/musdb-sample/mixture.flac and the `demucs` package (tests' extra).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import cpu_line

ROOT = Path(__file__).resolve().parents[1]
MIXTURE = ROOT.parent / "shared" / "data" / "musdb-sample" / "mixture.flac"


def make_inputs(folder: Path, tracks: int, seconds: float) -> list[Path]:
    mix, rate = sf.read(MIXTURE, dtype="float32")
    frames = int(seconds * rate)
    audio = np.concatenate([mix] * (frames // len(mix) + 1))[:frames]
    paths = []
    for index in range(tracks):
        path = folder / f"track{index}.mp3"
        sf.write(path, np.roll(audio, index * 1000, axis=0), rate, format="MP3")
        paths.append(path)
    return paths


def make_checkpoint(path: Path, channels: int) -> Path:
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "zoo"))
    import zoo_checkpoints as zc
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    model = HTDemucs(sources=zc.SOURCES, channels=channels, depth=4, nfft=4096, t_layers=1,
                     t_heads=2, bottom_channels=0, dconv_comp=2)  # fmt: skip
    return zc.save_bytes(path, zc.demucs_package_bytes(model))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels", type=int, default=4, help="HTDemucs width")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--jobs", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    import torch

    from stemsplit.api import build_request, plan_run
    from stemsplit.batch.inputs import Track
    from stemsplit.batch.run import run_batch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        tracks = [Track(t) for t in make_inputs(folder, args.tracks, args.seconds)]
        checkpoint = make_checkpoint(folder / "model.th", args.channels)
        separator = plan_run(build_request(checkpoint=checkpoint, out=folder / "out",
                                           format="flac"))  # fmt: skip
        run_batch(separator, tracks[:1], skip_existing=False, jobs=0)  # warm-up
        times: dict[int, list[float]] = {j: [] for j in args.jobs}
        for round_index in range(args.rounds):
            order = args.jobs if round_index % 2 == 0 else args.jobs[::-1]
            for jobs in order:
                started = time.perf_counter()
                results = run_batch(separator, tracks, skip_existing=False, jobs=jobs)
                times[jobs].append(time.perf_counter() - started)
                assert all(r.status == "done" for r in results), results
        audio = args.tracks * args.seconds
        base = statistics.median(times[args.jobs[0]])
        print(f"{args.tracks} x {args.seconds:g} s MP3 -> FLAC, HTDemucs channels="
              f"{args.channels}, torch threads {args.threads}, {args.rounds} rounds")
        print(cpu_line())
        for jobs, values in times.items():
            median = statistics.median(values)
            print(f"jobs={jobs}: median {median:6.2f} s  ({audio / median:5.2f}x real time)  "
                  f"ratio to jobs={args.jobs[0]}: {median / base:.3f}  "
                  f"runs: {', '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
