"""Cross-track batching: short clips, one track at a time vs chunks pooled across tracks.

Cuts `--clips` clips of 3-10 s at random places from a reel of real music (the MUSDB
sample's mixture and a remix of its stems, the carried clips of tests/), loads a small
HTDemucs (random weights, `common.SMALL_KWARGS`; its 7.8 s segment makes a 3-10 s clip
one or two chunks), then runs the whole folder through `batch.run.run_batch` in one
process, side by side: one track at a time (`--batch-size` chunks of that track per
pass, as before) and pooled across tracks at each batch size in `--batch-sizes`, the
settings' order reversed round after round so load drifts hit each alike. Prints wall
and CPU seconds per setting, the speed-up over one track at a time, the forward passes
and the chunks they held, and the largest difference of any pooled stem sample from
the one-track run's (float32 WAV out, so the comparison sees the engine's numbers).

    python benchmarks/cross_track.py [--clips 200] [--batch-sizes 4 8 16] [--rounds 1]
        [--threads 2] [--device cpu]

Needs the `demucs` package (tests' extra) to write the checkpoint.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import RATE, SHARED_MIX, cpu_line, write_demucs_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SONGS = [ROOT / "tests/fixtures/music/mixture.flac", ROOT / "tests/data/uvr/mixture.flac",
         ROOT / "tests/data/uvr/mixture_vr.flac"]  # fmt: skip


def reel() -> np.ndarray:
    """`(frames, 2)` real music at 44.1 kHz: the MUSDB sample (and a remix of its stems
    when ../shared has them), then the clips tests/ carries."""
    parts = []
    if SHARED_MIX.exists():
        parts.append(sf.read(SHARED_MIX, dtype="float32", always_2d=True)[0])
        stems = [sf.read(SHARED_MIX.parent / f"{name}.flac", dtype="float32",
                         always_2d=True)[0] for name in ("drums", "bass", "other", "vocals")]
        parts.append(0.3 * stems[0] + 0.8 * stems[1] + 0.6 * stems[2] + 1.2 * stems[3])
    parts += [sf.read(path, dtype="float32", always_2d=True)[0] for path in SONGS]
    return np.concatenate(parts)


def make_clips(folder: Path, count: int, seed: int = 0) -> tuple[list[Path], float]:
    """`count` 16-bit WAV clips of 3-10 s from the looped reel; their total seconds."""
    music = reel()
    looped = np.concatenate([music] * (10 * RATE // len(music) + 2))
    rng = np.random.default_rng(seed)
    paths, total = [], 0
    for index in range(count):
        frames = int(rng.uniform(3.0, 10.0) * RATE)
        start = int(rng.integers(0, len(looped) - frames))
        path = folder / f"clip{index:03d}.wav"
        sf.write(path, np.clip(looped[start : start + frames], -1, 1), RATE, subtype="PCM_16")
        paths.append(path)
        total += frames
    return paths, total / RATE


def largest_difference(pooled: Path, single: Path) -> tuple[float, int]:
    """Max |pooled - one-track| over every stem sample, and the files compared."""
    worst, files = 0.0, 0
    for path in sorted(pooled.rglob("*.wav")):
        mine = sf.read(path, dtype="float32")[0]
        alone = sf.read(single / path.relative_to(pooled), dtype="float32")[0]
        assert mine.shape == alone.shape, path
        worst = max(worst, float(np.abs(mine - alone).max()))
        files += 1
    return worst, files


def _keeping(separator):
    """`separator.track_batcher`, keeping the last batcher made (its pass counts)."""
    make = separator.track_batcher

    def track_batcher():
        separator.last_batcher = make()
        return separator.last_batcher

    return track_batcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="small", choices=["small", "full"])
    args = parser.parse_args()

    from stemsplit.allocator import keep_large_blocks_on_heap

    keep_large_blocks_on_heap()  # as `stemsplit separate` does, before any tensor exists
    import torch

    from stemsplit.api import build_request, plan_run
    from stemsplit.batch.inputs import Track
    from stemsplit.batch.run import run_batch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        (folder / "clips").mkdir()
        paths, seconds = make_clips(folder / "clips", args.clips)
        tracks = [Track(path) for path in paths]
        checkpoint = write_demucs_checkpoint(folder / "model.th", args.config)
        settings = ["one track at a time"] + [f"pooled, batch {b}" for b in args.batch_sizes]
        separators = {}
        for name in settings:
            size = max(args.batch_sizes) if name.startswith("one") else int(name.split()[-1])
            separator = plan_run(build_request(
                checkpoint=checkpoint, out=folder / name.replace(" ", "_").replace(",", ""),
                format="wav", bit_depth="float32", clip="none", batch_size=size,
                device=args.device))  # fmt: skip
            if name.startswith("one"):
                separator.track_batcher = lambda: None  # the loop as before pooling
            else:
                separator.track_batcher = _keeping(separator)
            run_batch(separator, tracks[:2], skip_existing=False)  # warm-up, models loaded
            separators[name] = separator
        wall: dict[str, list[float]] = {name: [] for name in settings}
        cpu: dict[str, list[float]] = {name: [] for name in settings}
        passes: dict[str, str] = {}
        for round_index in range(args.rounds):
            for name in settings if round_index % 2 == 0 else settings[::-1]:
                separator = separators[name]
                started, cpu_started = time.perf_counter(), time.process_time()
                results = run_batch(separator, tracks, skip_existing=False)
                wall[name].append(time.perf_counter() - started)
                cpu[name].append(time.process_time() - cpu_started)
                assert all(r.status == "done" for r in results), results
                print(f"round {round_index + 1}, {name}: {wall[name][-1]:.1f} s wall, "
                      f"{cpu[name][-1]:.1f} s CPU", flush=True)  # fmt: skip
                batcher = getattr(separator, "last_batcher", None)
                if batcher is not None:
                    passes[name] = f"{batcher.passes} passes of {batcher.chunks / batcher.passes:.1f}"
        base = statistics.median(wall[settings[0]])
        print(f"{args.clips} clips of 3-10 s ({seconds:.0f} s of audio), HTDemucs "
              f"{args.config}, device {args.device}, torch threads {args.threads}, "
              f"{args.rounds} round(s), float32 WAV out")
        print(cpu_line())
        print("| setting | wall s | CPU s | x real time | speed-up | passes | max diff |")
        print("|---|---:|---:|---:|---:|---|---:|")
        single = folder / settings[0].replace(" ", "_")
        for name in settings:
            median = statistics.median(wall[name])
            diff = "-"
            if name != settings[0]:
                worst, files = largest_difference(folder / name.replace(" ", "_").replace(",", ""),
                                                  single)  # fmt: skip
                diff = f"{worst:.1e} ({files} files)"
            print(f"| {name} | {median:.1f} | {statistics.median(cpu[name]):.1f} | "
                  f"{seconds / median:.2f} | {base / median:.2f}x | {passes.get(name, '-')} | "
                  f"{diff} |")


if __name__ == "__main__":
    main()
