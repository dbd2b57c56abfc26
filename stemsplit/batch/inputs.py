"""Inputs -> tracks: files as given, folders (with `-r`, recursively) and globs.

A folder's tracks keep their path relative to that folder (`reldir`), so a library
with two `01 Intro.wav` in different albums maps to two output folders.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stemsplit.batch.storage import is_url
from stemsplit.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Track:
    """One input file; `reldir` is its folder relative to the folder input that gave it
    ("" for files given by name or glob), with a trailing slash; `number` its place in
    the whole input list (the `{n}` of file templates, the same in every shard and on
    every executor), 0 where none was given (then its place in the batch run)."""

    path: Path
    reldir: str = ""
    number: int = field(default=0, compare=False)

    def number_in(self, position: int) -> int:
        """`{n}` for this track, the `position`th (from 1) of the batch it runs in."""
        return self.number or position


def _audio_extensions() -> set[str]:
    from stemsplit.audio.formats import AUDIO_EXTENSIONS

    return set(AUDIO_EXTENSIONS)


def _is_audio(path: Path, extensions: set[str]) -> bool:
    return (path.is_file() and not path.name.startswith(".")
            and path.suffix.lower().lstrip(".") in extensions)  # fmt: skip


def expand_inputs(inputs: Sequence[str | Path], recursive: bool = False) -> list[Track]:
    """Each track once, in the order given (folders sorted). A path that does not exist
    is kept: it fails on its own, without stopping the others."""
    extensions = _audio_extensions()
    seen: set[Path] = set()
    tracks: list[Track] = []

    def add(path: Path, reldir: str = "") -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            tracks.append(Track(path, reldir, len(tracks) + 1))

    barren: list[str] = []  # folders and globs that gave nothing
    for item in inputs:
        if is_url(item):  # object storage: a prefix, a glob or one object
            from stemsplit.batch.storage import list_objects, local_path

            item = local_path(str(item)) or item
            if is_url(item):
                try:
                    for found, reldir in list_objects(str(item), recursive, extensions):
                        add(found, reldir)  # type: ignore[arg-type]  # an object's path
                except InputError as err:  # an empty prefix, as an empty folder
                    barren.append(str(err))
                continue
        path = Path(item)
        before = len(tracks)
        if path.is_dir():
            for child in sorted(path.glob("**/*" if recursive else "*")):
                if _is_audio(child, extensions):
                    parent = child.parent.relative_to(path).as_posix()
                    add(child, "" if parent == "." else parent + "/")
            if len(tracks) == before:
                barren.append(_barren_folder(path, recursive, extensions))
            elif not recursive and (below := _count_below(path, extensions)):
                barren.append(f"{path}: {below} more audio file{'s' * (below > 1)} in its "
                              "subfolders left out: add -r to separate them too")  # fmt: skip
        elif not path.exists() and glob.has_magic(str(item)):
            for match in sorted(glob.glob(str(item), recursive=recursive)):
                if Path(match).is_file():
                    add(Path(match))
            if len(tracks) == before:
                barren.append(f"{item}: the pattern matches no files")
        else:
            add(path)
    if not tracks:
        raise InputError("no audio files found: " + ("; ".join(barren) or "the inputs are empty"))
    for message in barren:  # the others still run; say what was left out
        log.warning("%s", message)
    if not any(t.path.exists() for t in tracks):
        missing = ", ".join(str(t.path) for t in tracks[:3])
        raise InputError(f"no such file: {missing}")
    return tracks


def shard(tracks: Sequence[Track], index: int, count: int) -> list[Track]:
    """The tracks of shard `index` of `count`: those whose input (path or URL, as given)
    hashes to `index`, so array jobs given the same inputs split them without talking."""
    import hashlib

    def bucket(track: Track) -> int:
        digest = hashlib.sha256(str(track.path).encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % count

    return [track for track in tracks if bucket(track) == index]


def _count_below(path: Path, extensions: set[str]) -> int:
    """Audio files in `path`'s subfolders (what a folder input without -r leaves out)."""
    return sum(1 for child in path.glob("*/**/*") if _is_audio(child, extensions))


def _barren_folder(path: Path, recursive: bool, extensions: set[str]) -> str:
    if recursive:
        return f"{path}: no audio files in this folder or its subfolders"
    below = _count_below(path, extensions)
    if below:
        return (f"{path}: no audio files here, but {below} in its subfolders: "
                "add -r to separate them")  # fmt: skip
    return f"{path}: no audio files in this folder"


def check_input(path: Path) -> None:
    """Cheap checks before any model loads: the file exists, is not empty, and its
    header is audio (InputError / UndecodableAudio otherwise)."""
    from stemsplit.audio.reader import probe

    probe(path)
