"""Atomic files: the one temporary-name scheme and the one write-then-rename helper.

Every file stemsplit publishes (stems, `stemsplit.json`, reports, images, hash
records) is written to `.<name>.partial-<pid>` beside its final path and renamed onto
it when complete, so a file under its final name is always whole. The pid lets a
later run tell a dead process's leftovers (removed) from a live one's (kept):
`stale_partials` finds them.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path

PARTIAL_MARKER = ".partial-"
# OUT/.stemsplit-tmp-<pid>/: a batch's decoded inputs (spool files), swept when its
# process is gone (`batch.io.remove_stale`).
SPOOL_PREFIX = ".stemsplit-tmp-"


def partial_path(path: Path, pid: int | None = None) -> Path:
    """The temporary name `path` is written under until it is complete."""
    return path.with_name(f".{path.name}{PARTIAL_MARKER}{os.getpid() if pid is None else pid}")


def partial_pid(name: str) -> int | None:
    """The writer's pid in a temporary name (`.x.wav.partial-123[.f32]`), else None."""
    if PARTIAL_MARKER not in name:
        return None
    digits = name.rsplit(PARTIAL_MARKER, 1)[-1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def partials_of(path: Path) -> Iterator[Path]:
    """Temporary files of any process for final path `path` (and their side files)."""
    folder = path.parent
    if folder.is_dir():
        yield from folder.glob(f".{glob.escape(path.name)}{PARTIAL_MARKER}*")


def write_atomic(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary_path)`, then rename onto `path`; the temporary goes on error."""
    temp = partial_path(path)
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """`path.write_text(text)` that never leaves a half-written file."""
    return write_atomic(path, lambda temp: temp.write_text(text, encoding="utf-8"))
