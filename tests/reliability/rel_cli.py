"""Helpers for the reliability tests: run the real command, check its failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_run import stemsplit  # noqa: F401 - the tests' one command runner

# Temporary files; download locks (`.NAME.lock`) are removed by their holder too.
LEFTOVER_GLOBS = (".*.partial-*", ".stemsplit-spool-*", ".*.lock")


def leftovers(folder: Path) -> list[Path]:
    """Temporary files under `folder` that a finished (or stopped) run must not leave."""
    return sorted(p for pattern in LEFTOVER_GLOBS for p in folder.rglob(pattern))


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
