"""Folders of stems: the one scanner that `stemsplit eval` and `stemsplit report` share.

A stem is an audio file named after it (`vocals.wav`); `mixture.<ext>` is the mix, not a
stem; a track is a folder holding stems, named after the folder. Symlinked folders are
followed (datasets are often assembled from links), each real folder once.
"""

from __future__ import annotations

import os
from pathlib import Path

from stemsplit.audio.formats import AUDIO_EXTENSIONS
from stemsplit.errors import InputError, UsageError

MIXTURE = "mixture"
Stems = dict[str, Path]


def stems_in(folder: Path) -> Stems:
    """`{stem: file}` for the audio files in `folder` (the mixture included, by name)."""
    stems: Stems = {}
    for path in sorted(Path(folder).iterdir()):
        name = path.name
        if name.startswith(".") or path.suffix.lower().lstrip(".") not in AUDIO_EXTENSIONS:
            continue
        if not path.is_file() or path.stem.lower().endswith(".stem"):  # NI multitrack stems
            continue
        if path.stem in stems:
            raise UsageError(f"{folder} holds two files for stem {path.stem!r}: keep one")
        stems[path.stem] = path
    return stems


def split_mixture(stems: Stems) -> tuple[Stems, Path | None]:
    """(the stems without the mixture, the mixture file or None)."""
    rest = {k: v for k, v in stems.items() if k != MIXTURE}
    return rest, stems.get(MIXTURE)


def find_tracks(root: str | os.PathLike[str]) -> dict[str, Stems]:
    """`{track: {stem: file}}` for `root` and every folder below it holding audio files."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"no such folder: {root}")
    if not root.is_dir():
        raise UsageError(f"{root} is a file: give a folder of <stem>.<ext> files or of tracks")
    tracks: dict[str, Stems] = {}
    where: dict[str, Path] = {}
    seen: set[Path] = set()
    for folder, dirs, _ in os.walk(root, followlinks=True):
        real = Path(folder).resolve()
        if real in seen:  # a link back up the tree, or two links to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        stems = stems_in(Path(folder))
        if not stems:
            continue
        name = Path(folder).name if Path(folder) != root else real.name
        if name in tracks:
            raise UsageError(
                f"two track folders named {name!r} ({where[name]} and {folder}): "
                "point at a tree where track folder names are unique"
            )
        tracks[name], where[name] = stems, Path(folder)
    return tracks
