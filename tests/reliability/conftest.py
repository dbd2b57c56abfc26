"""Reliability matrix set-up: the real command, a tiny model, and the no-leftovers bar.

Every test here runs `python -m stemsplit ...` in a subprocess (the CLI is what users
meet), with a tiny HDemucs checkpoint written by the `demucs` package itself. The
autouse `no_leftovers` fixture fails any test that leaves a writer's temporary file
(`.*.partial-*`) or a spool file under its tmp_path (outputs and the
model cache both live there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Download lock files (`.NAME.lock`) stay on purpose: unlinking a flock()ed file races.
LEFTOVER_GLOBS = (".*.partial-*", ".stemsplit-spool-*")
ZOO_ENV = ("STEMSPLIT_MODEL_DIR", "STEMSPLIT_OFFLINE", "STEMSPLIT_MIRROR", "STEMSPLIT_ZOO",
           "STEMSPLIT_TIMEOUT")  # fmt: skip


def leftovers(folder: Path) -> list[Path]:
    """Temporary files under `folder` that a finished (or stopped) run must not leave."""
    return sorted(p for pattern in LEFTOVER_GLOBS for p in folder.rglob(pattern))


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    found = leftovers(tmp_path)
    assert not found, f"temporary files left behind: {[str(p) for p in found]}"


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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HDemucs (track mean/std normalisation, like the real ones), demucs' format.

    Depth 4 / nfft 1024 so the hybrid branches meet; segment 2 s keeps runs short.
    """
    pytest.importorskip("demucs")
    import torch
    import zoo_checkpoints as zc
    from demucs.hdemucs import HDemucs

    torch.manual_seed(0)
    model = HDemucs(sources=zc.SOURCES, channels=4, depth=4, nfft=1024, dconv_comp=2,
                    segment=2)  # fmt: skip
    path = tmp_path_factory.mktemp("model") / "tiny.th"
    return zc.save_bytes(path, zc.demucs_package_bytes(model))


def noise(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0):
    """`(frames, channels)` float32 noise at -20 dBFS."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((round(seconds * rate), channels))).astype(np.float32)
