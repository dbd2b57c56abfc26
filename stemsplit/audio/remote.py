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
    remote input's stream, closed when the block ends. A read of the stream that
    fails (the network) ends the block with InputError, whatever the decoder made of
    the early end it saw."""
    if not isinstance(path, RemoteFile):
        yield str(path)
        return
    with path.open_stream() as stream:
        guarded = _Guarded(stream)
        try:
            yield guarded  # type: ignore[misc]  # reads, seeks and tells as a BinaryIO
        except Exception:
            guarded.check(path)  # the failed read is the cause, not the decoder's complaint
            raise
        guarded.check(path)


class _Guarded:
    """A stream whose failed read looks like its end: libsndfile calls back into Python
    for reads, and an exception there is printed as a traceback and taken for the end
    of the file (a short WAV or MP3 is then separated as far as it goes). `check`
    raises the kept error once the decoder is done."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.error: Exception | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is None:
            try:
                return self._stream.read(size)
            except Exception as err:  # any failure of the store's client
                self.error = err
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def check(self, path: RemoteFile) -> None:
        if self.error is not None:
            from stemsplit.errors import InputError

            raise InputError(f"{path}: reading the object failed ({self.error}); "
                             "rerun to retry") from self.error  # fmt: skip


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
