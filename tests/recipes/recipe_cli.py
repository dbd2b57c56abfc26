"""Helpers for the recipe tests: the real command as a subprocess (with its peak RSS),
the fixture models, a recipe file over them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import carried
import numpy as np


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float


def stemsplit(*args: str | Path, timeout: float = 300, cwd: Path | None = None) -> Run:
    """`python -m stemsplit ARGS`, one torch thread (busy shared machines), with the
    process' own peak RSS (os.wait4's rusage: this child only, not all children)."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stemsplit", *map(str, args)], stdout=out, stderr=err,
            cwd=cwd, env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read().decode(), err.read().decode(),
                   usage.ru_maxrss / 1024)  # fmt: skip


def fixture(name: str) -> tuple[Path, Path]:
    """(model.ckpt, config.yaml) of a fixture model (tests/fixtures)."""
    folder = carried.fixture(name)
    return folder / "model.ckpt", folder / "config.yaml"


def long_mixture(path: Path, seconds: float) -> Path:
    """The fixtures' real-music mixture, repeated to `seconds` (+ an odd 37 frames)."""
    import soundfile

    mix, rate = soundfile.read(str(carried.mixture_of(carried.fixture("bs_roformer"))),
                               dtype="float32", always_2d=True)  # fmt: skip
    frames = int(seconds * rate) + 37
    reps = -(-frames // len(mix))
    audio = np.concatenate([mix] * reps)[:frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio, rate, subtype="FLOAT")
    return path


def two_step_recipe(path: Path, extra: str = "") -> Path:
    """bs_roformer on the mixture (keeps `other` as accomp), mel_roformer on its vocals
    (keeps vocals as lead, other as backing)."""
    bs, bs_config = fixture("bs_roformer")
    mel, mel_config = fixture("mel_roformer")
    path.write_text(f"""
[[steps]]
name = "first"
checkpoint = "{bs}"
config = "{bs_config}"
keep = {{ other = "accomp" }}

[[steps]]
name = "second"
input = "first.vocals"
checkpoint = "{mel}"
config = "{mel_config}"
keep = {{ vocals = "lead", other = "backing" }}
{extra}""")
    return path


def read(path: Path) -> np.ndarray:
    import soundfile

    return soundfile.read(str(path), dtype="float32", always_2d=True)[0]


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    noise = float(np.sum((reference.astype(np.float64) - estimate) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)
