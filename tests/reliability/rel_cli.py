"""Helpers for the reliability tests: run the real command, check its failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Download lock files (`.NAME.lock`) stay on purpose: unlinking a flock()ed file races.
LEFTOVER_GLOBS = (".*.partial-*", ".stemsplit-spool-*")
ZOO_ENV = ("STEMSPLIT_MODEL_DIR", "STEMSPLIT_OFFLINE", "STEMSPLIT_MIRROR", "STEMSPLIT_ZOO",
           "STEMSPLIT_TIMEOUT")  # fmt: skip


def leftovers(folder: Path) -> list[Path]:
    """Temporary files under `folder` that a finished (or stopped) run must not leave."""
    return sorted(p for pattern in LEFTOVER_GLOBS for p in folder.rglob(pattern))


def stemsplit(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m stemsplit ARGS`; the zoo variables cleared unless given in `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ZOO_ENV}
    return subprocess.run(
        [sys.executable, "-m", "stemsplit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
        env={**base, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_failure(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit `code`, exactly one stderr line (an `error:` line), no traceback; returns it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def noise(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0):
    """`(frames, channels)` float32 noise at -20 dBFS."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)
