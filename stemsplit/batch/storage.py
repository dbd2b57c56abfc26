"""Object storage through fsspec: inputs and `-o` as URLs (`s3://`, `gs://`, `az://`, any
installed fsspec protocol; `file://` is a local path).

Inputs are listed under a prefix (`-r` for everything below it) and each object is
decoded straight from its stream (`ObjectPath.open_stream`: ranged reads, `_BLOCK`
bytes read ahead, nothing on local disk), so an hour-long input needs no local room;
the decoders read it once per pass (probe, decode per model rate, residuals). Outputs are written to a local staging
folder as for a local run and then uploaded whole, one object per file, the track's
record last: an object store publishes an object only when its upload completes, so a
stem under its final key is always whole, and a record in the bucket means every stem
beside it is. Credentials and endpoints come from each SDK's own environment
(`AWS_*` with `AWS_ENDPOINT_URL`, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_*`).
fsspec is optional: `pip install 'stemsplit-cli[cloud]'`.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from stemsplit.errors import InputError, UsageError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_BLOCK = 1 << 22  # bytes an input's stream reads ahead (what it holds of the object)


def is_url(value: object) -> bool:
    """Whether `value` names an object by URL (`file://` counts: it is a local path)."""
    return bool(_SCHEME.match(str(value)))


def local_path(value: str) -> Path | None:
    """`file:///a/b.wav` -> /a/b.wav; None for other URLs."""
    match = _SCHEME.match(value)
    if match and match.group(1).lower() == "file":
        return Path(value[len(match.group(0)):] or "/")
    return None


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's filesystem for `url` and the path inside it (UsageError: protocol unknown)."""
    try:
        import fsspec
    except ImportError as err:
        raise UsageError(f"{url}: object storage needs fsspec: pip install "
                         "'stemsplit-cli[cloud]' (s3fs, gcsfs or adlfs for the store)") from err  # fmt: skip
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise UsageError(f"{url}: {err}") from err


class ObjectPath(PurePosixPath):
    """An object's URL with pathlib's names (`name`, `stem`, `suffix`, `parent`, `/`);
    `str()` gives the URL back, `exists()` and `size()` ask the store, and the decoders
    read it through `open_stream()` (an `audio.remote.RemoteFile`)."""

    def __str__(self) -> str:
        scheme, _, rest = super().__str__().partition(":/")
        return f"{scheme}://{rest}"

    def exists(self) -> bool:
        fs, path = filesystem(str(self))
        return bool(fs.exists(path))

    is_file = exists

    def size(self) -> int:
        fs, path = filesystem(str(self))
        try:
            return int(fs.size(path))
        except FileNotFoundError:
            raise self._missing() from None

    def open_stream(self) -> BinaryIO:
        """The object as a seekable stream of ranged reads: one read-ahead buffer of
        `_BLOCK` bytes beyond the last read is all it holds."""
        fs, path = filesystem(str(self))
        try:
            stream: BinaryIO = fs.open(path, "rb", block_size=_BLOCK, cache_type="readahead")
        except FileNotFoundError:
            raise self._missing() from None
        return stream

    def _missing(self) -> InputError:
        return InputError(f"{self}: no such object; check the URL")

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve


def list_objects(url: str, recursive: bool, extensions: set[str]) -> list[tuple[ObjectPath, str]]:
    """(object, reldir) for the audio objects `url` names: a prefix (its objects; with
    `recursive` every object below it, keeping the sub-prefix as reldir), a glob, or one
    object (kept even when missing: it fails on its own)."""
    fs, root = filesystem(url)

    def as_url(path: str) -> ObjectPath:
        return ObjectPath(fs.unstrip_protocol(path))

    def audio(path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return not name.startswith(".") and name.rsplit(".", 1)[-1].lower() in extensions \
            and "." in name

    root = root.rstrip("/")
    if glob.has_magic(root):
        return [(as_url(p), "") for p in sorted(fs.glob(root)) if audio(p) and fs.isfile(p)]
    if not fs.isdir(root):
        return [(as_url(root), "")]
    found = fs.find(root, maxdepth=None if recursive else 1)
    objects = []
    for path in sorted(found):
        if audio(path):
            parent = path[len(root) + 1:].rpartition("/")[0]
            objects.append((as_url(path), parent + "/" if parent else ""))
    if not objects:
        below = "" if recursive else " (add -r for sub-prefixes)"
        raise InputError(f"{url}: no audio objects under this prefix{below}")
    return objects


class Bucket:
    """An output URL and the local staging folder whose layout it mirrors: a local
    path under `staging` is the object at the same relative key under `url`."""

    def __init__(self, url: str, staging: Path) -> None:
        self.url = url.rstrip("/")
        self.staging = Path(staging)
        self.fs, self.root = filesystem(self.url)
        self.root = self.root.rstrip("/")

    def key(self, local: Path) -> str:
        return f"{self.root}/{Path(local).relative_to(self.staging).as_posix()}"

    def url_of(self, local: Path) -> ObjectPath:
        return ObjectPath(self.fs.unstrip_protocol(self.key(local)))

    def is_file(self, local: Path) -> bool:
        self.fs.invalidate_cache(self.key(local))  # another worker may have written it since
        return bool(self.fs.isfile(self.key(local)))

    def read_record(self, local: Path) -> dict[str, Any] | None:
        """The record a run left in the bucket (None: none, or unreadable)."""
        try:
            data = json.loads(self.fs.cat_file(self.key(local)))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def upload(self, records: Sequence[Path]) -> None:
        """Every file in staging goes up whole, `records` last; then the local files go."""
        files = [p for p in _files(self.staging) if p not in records]
        for path in [*files, *records]:
            self.fs.put_file(str(path), self.key(path))
        for path in [*files, *records]:
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        """Drop what a failed track left in staging (never uploaded)."""
        for path in _files(self.staging):
            path.unlink(missing_ok=True)


def _files(folder: Path) -> Iterator[Path]:
    """Finished files under `folder` (no temporaries, no decode spools)."""
    from stemsplit.atomic import PARTIAL_MARKER, SPOOL_PREFIX

    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and PARTIAL_MARKER not in path.name and SPOOL_PREFIX not in relative:
            yield path
