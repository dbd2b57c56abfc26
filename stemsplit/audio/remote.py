"""Inputs that are no local file: objects in a bucket (`batch.storage.ObjectPath`).

The decoders (libsndfile, FFmpeg) and the tag reader take seekable file objects as
well as names, so an object is decoded from a stream it opens, with a bounded
read-ahead, and never copied whole to local disk (issue 33: hour-long inputs on
workers without room for them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, Union, runtime_checkable


@runtime_checkable
class RemoteFile(Protocol):
    """An input read through a stream; its `str()` names it in messages and records."""

    def open_stream(self) -> BinaryIO:
        """A new seekable binary stream of the whole input (InputError: missing)."""
        ...

    def size(self) -> int:
        """Its length in bytes (InputError: missing)."""
        ...


AudioInput = Union[str, "os.PathLike[str]", RemoteFile]


@contextlib.contextmanager
def opened(path: AudioInput) -> Iterator[str | BinaryIO]:
    """What a decoder opens: a local file's name (the decoder's own file I/O) or a
    remote input's stream, closed when the block ends."""
    if isinstance(path, RemoteFile):
        with path.open_stream() as stream:
            yield stream
    else:
        yield str(path)


@contextlib.contextmanager
def binary(path: Path | RemoteFile) -> Iterator[BinaryIO]:
    """A seekable binary stream of a local file or a remote input (for our own reads)."""
    if isinstance(path, RemoteFile):
        with path.open_stream() as stream:
            yield stream
    else:
        with open(path, "rb") as handle:
            yield handle


def local_or_remote(path: AudioInput) -> Path | RemoteFile:
    """A remote input as it is, anything else as a local Path."""
    return path if isinstance(path, RemoteFile) else Path(path)
