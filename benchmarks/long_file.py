"""A 60-minute file through `stemsplit`: wall time and peak RSS (the bar: <= 1.5 GB).

Writes a WAV of looped MUSDB music and a demucs-format HTDemucs checkpoint with
random weights, then runs `stemsplit FILE --checkpoint MODEL.th` once in a fresh
process. `--config small` (default) is a small HTDemucs (common.SMALL_KWARGS): the
released configuration would need hours for an hour of audio on a 2-core CPU; use
`--config full --minutes 2` for its peak RSS (memory does not grow with length:
benchmarks/memory.py).

    python benchmarks/long_file.py [--minutes 60] [--config small] [--threads 2]
    python benchmarks/long_file.py --config full --minutes 10 --reference demucs

`--reference demucs` also runs the demucs command on the same file and checkpoint
(`python -m demucs.separate --repo DIR -n NAME --shifts 0 --flac`; it needs ffmpeg),
so the two peak RSS figures sit side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import (
    cpu_line,
    exit_on_sigterm,
    run_measured,
    run_stemsplit,
    write_demucs_checkpoint,
    write_music_wav,
)

BAR_MB = 1500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--config", choices=["small", "full"], default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", choices=["none", "demucs"], default="none")
    args = parser.parse_args()
    exit_on_sigterm()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_demucs_checkpoint(folder / f"{args.config}.th", args.config)
        wav = write_music_wav(folder / "long.wav", args.minutes * 60)
        run = run_stemsplit(wav, checkpoint, folder / "out", args.threads)
        stems = sorted(p.name for p in (folder / "out").rglob("*.flac"))
        if args.reference == "demucs":
            demucs_run = run_measured(
                [sys.executable, "-m", "demucs.separate", "--repo", str(folder), "-n",
                 args.config, "-d", "cpu", "--shifts", "0", "--flac", "-o",
                 str(folder / "demucs-out"), str(wav)],
                env={"OMP_NUM_THREADS": str(args.threads)},
            )  # fmt: skip
            print(json.dumps({"reference": "demucs", "seconds": round(demucs_run["seconds"], 1),
                              "peak_rss_mb": round(demucs_run["peak_rss_mb"], 1)}))  # fmt: skip
    result = {"minutes": args.minutes, "config": args.config, "threads": args.threads,
              "seconds": round(run["seconds"], 1),
              "rtf": round(args.minutes * 60 / run["seconds"], 2),
              "peak_rss_mb": round(run["peak_rss_mb"], 1), "stems": stems}  # fmt: skip
    print(json.dumps(result))
    print(cpu_line())
    verdict = "met" if run["peak_rss_mb"] <= BAR_MB else "NOT met"
    print(f"{args.minutes:g} min, HTDemucs {args.config}: {run['seconds']:.1f} s wall "
          f"(RTF {result['rtf']}), peak RSS {run['peak_rss_mb']:.0f} MB (bar <= {BAR_MB} MB: "
          f"{verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
