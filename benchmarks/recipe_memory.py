"""Peak RSS and time of a two-step recipe against its two steps run by hand.

The recipe (bs_roformer fixture on the mixture, mel_roformer fixture on its vocals, as
in tests/recipes) runs in one process; by hand, step 1 writes vocals.wav and step 2
separates that file. Each command is a fresh `python -m stemsplit` whose own peak RSS
comes from os.wait4. The chain should cost the larger step's memory (both networks are
resident, intermediate stems live in spool files), whatever the track's length.

    python benchmarks/recipe_memory.py [--seconds 60 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def run(args: list[str], threads: int) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of `python -m stemsplit ARGS`."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "stemsplit", *args, "-q"],
                            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"stemsplit {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0, 300.0])
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args()
    bs, mel = FIXTURES / "bs_roformer", FIXTURES / "mel_roformer"
    if not (bs / "model.ckpt").is_file():
        raise SystemExit(f"{FIXTURES} is absent: this benchmark needs the fixture models")
    mix, rate = soundfile.read(str(bs / "mixture.wav"), dtype="float32", always_2d=True)
    print(f"{'seconds':>8} {'recipe MB':>10} {'step1 MB':>9} {'step2 MB':>9} {'ratio':>6} "
          f"{'recipe s':>9} {'by hand s':>10}")  # fmt: skip
    for seconds in options.seconds:
        with tempfile.TemporaryDirectory(prefix="recipe-memory-") as folder:
            root = Path(folder)
            frames = int(seconds * rate)
            song = root / "song.wav"
            soundfile.write(str(song), np.tile(mix, (-(-frames // len(mix)), 1))[:frames], rate,
                            subtype="FLOAT")  # fmt: skip
            recipe = root / "two.toml"
            recipe.write_text(
                f'[[steps]]\nname = "first"\ncheckpoint = "{bs / "model.ckpt"}"\n'
                f'config = "{bs / "config.yaml"}"\nkeep = {{ other = "accomp" }}\n'
                f'[[steps]]\nname = "second"\ninput = "first.vocals"\n'
                f'checkpoint = "{mel / "model.ckpt"}"\nconfig = "{mel / "config.yaml"}"\n'
                f'keep = {{ vocals = "lead", other = "backing" }}\n'
            )  # fmt: skip
            chained = run([str(song), "--recipe", str(recipe), "-o", str(root / "r")],
                          options.threads)  # fmt: skip
            first = run([str(song), "--checkpoint", str(bs / "model.ckpt"), "--config",
                         str(bs / "config.yaml"), "-o", str(root / "h1")], options.threads)
            vocals = root / "h1" / "model" / "song" / "vocals.wav"
            second = run([str(vocals), "--checkpoint", str(mel / "model.ckpt"), "--config",
                          str(mel / "config.yaml"), "-o", str(root / "h2")], options.threads)
            ratio = chained[0] / max(first[0], second[0])
            print(f"{seconds:8.0f} {chained[0]:10.0f} {first[0]:9.0f} {second[0]:9.0f} "
                  f"{ratio:6.2f} {chained[1]:9.1f} {first[1] + second[1]:10.1f}", flush=True)


if __name__ == "__main__":
    main()
