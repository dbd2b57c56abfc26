"""The one way tests run the real command: `python -m stemsplit ARGS` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Variables that point the zoo elsewhere: a test's command never inherits them from the
# developer's shell (each test passes what it needs in `env`).
ZOO_ENV = ("STEMSPLIT_MIRROR", "STEMSPLIT_ZOO", "STEMSPLIT_MODEL_DIR", "STEMSPLIT_OFFLINE",
           "STEMSPLIT_TIMEOUT")


def stemsplit(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300,
              **kwargs: Any) -> subprocess.CompletedProcess:
    """Never raises on failure; a fixed terminal width for output assertions.

    One torch thread: these machines run other work beside the tests, and two OpenMP
    threads on two busy cores spin-wait (a 4 s RoFormer run took 25 s instead of 5 s).
    Results do not depend on it.
    """
    base = {k: v for k, v in os.environ.items() if k not in ZOO_ENV}
    return subprocess.run(
        [sys.executable, "-m", "stemsplit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
        env={**base, "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})}, **kwargs,
    )  # fmt: skip


def label(checkpoint: Path, config: Path | None = None) -> str:
    """The output folder of a local checkpoint, written from issue 30's rule (not read
    from the code under test): its stem (its folder's name for the generic stem `model`)
    and the first 8 hex of its sha256 (with a config: of the two hex digests joined)."""
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    checkpoint = Path(checkpoint)
    base = checkpoint.absolute().parent.name if checkpoint.stem == "model" else checkpoint.stem
    sha = digest(checkpoint)
    if config is not None:
        sha = hashlib.sha256((sha + digest(config)).encode()).hexdigest()
    return f"{base}-{sha[:8]}"
