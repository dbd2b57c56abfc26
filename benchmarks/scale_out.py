"""Throughput of the executors through the real command: the batch summary's figures.

    python benchmarks/scale_out.py [--tracks 8] [--seconds 10] [--model-dir ../shared/fixtures/htdemucs_msst]

Writes `--tracks` copies (shifted) of the fixture's mixture, each `--seconds` long, and
separates them with: the local executor (torch's threads = the machine's cores, then
one thread), and Ray with 1 and 2 workers of one CPU each (a local cluster the run starts, its start-up
counted: what a small job pays). Prints each run's `throughput` object (`--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--model-dir", type=Path,
                        default=HERE.parent.parent / "shared" / "fixtures" / "htdemucs_msst")
    args = parser.parse_args()
    model = ["--checkpoint", str(args.model_dir / "model.ckpt"),
             "--config", str(args.model_dir / "config.yaml")]
    mix, rate = soundfile.read(args.model_dir / "mixture.wav", dtype="float32", always_2d=True)
    frames = int(args.seconds * rate)
    with tempfile.TemporaryDirectory(prefix="scaleout-") as folder:
        songs = Path(folder) / "songs"
        songs.mkdir()
        for number in range(args.tracks):
            audio = np.roll(np.concatenate([mix] * (frames // len(mix) + 1))[:frames],
                            997 * number, axis=0)
            soundfile.write(songs / f"t{number}.wav", audio, rate, subtype="FLOAT")
        runs = {
            "local": [],
            "local, 1 thread": ["--threads", "1"],
            "ray, 1 worker": ["--executor", "ray", "--ray-workers", "1"],
            "ray, 2 workers": ["--executor", "ray", "--ray-workers", "2"],
        }
        for name, extra in runs.items():
            out = Path(folder) / name.replace(" ", "").replace(",", "-")
            result = subprocess.run(
                [sys.executable, "-m", "stemsplit", str(songs), *model, "-o", str(out),
                 "--json", *extra], capture_output=True, text=True,
                env={**os.environ, "RAY_TMPDIR": folder},
            )  # fmt: skip
            if result.returncode:
                sys.exit(f"{name}: {result.stderr}")
            summary = json.loads(result.stdout)
            print(f"{name}: {json.dumps(summary['throughput'])}, speed {summary['speed']}x")


if __name__ == "__main__":
    main()
