"""Peak memory of a whole separation must not grow with the track's length.

Separates a 2-minute and a 30-minute WAV (looped MUSDB music) with the real CLI,
`stemsplit FILE --checkpoint small.th`, each in a fresh process, and prints each run's
peak RSS, wall time and the long/short ratio (the bar: <= 1.2). The model is a small
HTDemucs (common.SMALL_KWARGS, random weights) so the 30-minute run takes minutes;
`--config full` uses the released hyperparameters.

    python benchmarks/memory.py [--minutes 2 30] [--config small] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import (
    cpu_line,
    exit_on_sigterm,
    run_stemsplit,
    write_demucs_checkpoint,
    write_music_wav,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 30])
    parser.add_argument("--config", choices=["small", "full"], default="small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    exit_on_sigterm()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_demucs_checkpoint(folder / f"{args.config}.th", args.config)
        for minutes in args.minutes:
            wav = write_music_wav(folder / f"track{minutes:g}.wav", minutes * 60)
            run = run_stemsplit(wav, checkpoint, folder / "out", args.threads)
            results.append({"minutes": minutes, "seconds": round(run["seconds"], 1),
                            "peak_rss_mb": round(run["peak_rss_mb"], 1),
                            "rtf": round(minutes * 60 / run["seconds"], 2)})  # fmt: skip
            wav.unlink()
            print(json.dumps(results[-1]), flush=True)
    print(f"HTDemucs ({args.config} config), stemsplit CLI, {args.threads} threads")
    print(cpu_line())
    print(f"{'minutes':>8} {'wall s':>8} {'RTF':>6} {'peak RSS MB':>12}")
    for row in results:
        print(f"{row['minutes']:8g} {row['seconds']:8.1f} {row['rtf']:6.2f} "
              f"{row['peak_rss_mb']:12.1f}")  # fmt: skip
    ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
    print(f"peak RSS ratio {results[-1]['minutes']:g} min / {results[0]['minutes']:g} min: "
          f"{ratio:.3f} (bar <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")


if __name__ == "__main__":
    main()
