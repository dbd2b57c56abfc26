"""What writing one NI Stems file costs: a `.stem.mp4` from four stems of N seconds.

Feeds `audio.stem_mp4.StemFile` as the pipeline does (every stem in 65,536-frame
blocks), from a noise input written as 24-bit FLAC, then closes it (the mux: re-read
the input as track 0, sum the slots, encode five tracks, tags, the stem box). Prints
the feed and mux wall times, the file size and the process' peak RSS; run it under
`/usr/bin/time -v` for CPU seconds (on a shared machine wall time is mostly waiting).

    python benchmarks/bench_stem_file.py --codec aac --seconds 300
    python benchmarks/bench_stem_file.py --codec alac --bit-depth 24 --seconds 300
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from stemsplit.audio.stem_mp4 import StemFile, resolve_slots

RATE = 44100
BLOCK = 2**16
STEMS = ["drums", "bass", "other", "vocals"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", choices=("aac", "alac"), default="aac")
    parser.add_argument("--bit-depth", type=int, choices=(16, 24), default=None)
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    frames = int(args.seconds * RATE)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "input.flac"
        with soundfile.SoundFile(str(source), "w", RATE, 2, subtype="PCM_24") as out:
            for start in range(0, frames, BLOCK):
                count = min(BLOCK, frames - start)
                out.write((0.1 * rng.standard_normal((count, 2))).astype(np.float32))
        path = Path(folder) / "song.stem.mp4"
        started = time.perf_counter()
        stem_file = StemFile(path, source, STEMS, resolve_slots(STEMS), args.codec,
                             args.bit_depth)  # fmt: skip
        sinks = {stem: stem_file.open_stem(path, RATE, 2, stem=stem) for stem in STEMS}
        with soundfile.SoundFile(str(source)) as mix:
            while len(block := mix.read(BLOCK, dtype="float32")):
                for sink in sinks.values():
                    sink.write(block.T * np.float32(0.25))
        fed = time.perf_counter()
        for sink in sinks.values():
            sink.close()
        done = time.perf_counter()
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.codec}{args.bit_depth or ''} {args.seconds:.0f} s: feed {fed - started:.2f} s, "
          f"mux {done - fed:.2f} s, file {size / 1e6:.1f} MB, peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
