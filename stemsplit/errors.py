"""Errors a user can cause. The CLI maps each type to one line and an exit code.

The library never exits the process; it raises one of these, chaining the cause
(`raise UndecodableAudio(...) from err`) so `--debug` can show where it came from.
"""

from __future__ import annotations


class StemsplitError(Exception):
    """Base class: a problem the user can fix; the message says what and what to do."""

    exit_code = 1


class UsageError(StemsplitError):
    """Options that contradict each other or name nothing that exists."""

    exit_code = 2


class UnknownModel(UsageError):
    """A model name that is neither in the zoo nor an alias."""


class UnknownStem(UsageError):
    """A stem name the chosen model(s) do not produce."""


class InputError(StemsplitError):
    """An input path that is missing, unreadable or not audio."""


class UndecodableAudio(InputError):
    """A file that exists but cannot be decoded as audio."""


class OutputError(StemsplitError):
    """An output that cannot be written (permissions, disk full, path clash)."""


class ReaderClosed(OutputError):
    """stdout's reader stopped reading (`| head -c 1000`): a normal end in a pipeline.
    The CLI stops quietly with 141, the status of a tool ended by SIGPIPE (128 + 13)."""

    exit_code = 141


class ModelError(StemsplitError):
    """A checkpoint or config that cannot be loaded into the expected architecture."""


class UnsafeCheckpoint(ModelError):
    """A checkpoint or config that asks to run code or build arbitrary objects."""


class DownloadError(StemsplitError):
    """A model file that could not be fetched (network, HTTP error, offline mode)."""


class ChecksumMismatch(DownloadError):
    """A downloaded or cached file whose sha256 does not match its model card."""


class Interrupted(StemsplitError):
    """SIGINT/SIGTERM: the run stopped cleanly, temporary files removed."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"interrupted by signal {signal_number}")
        self.exit_code = 128 + signal_number


# errno -> what to do about it, for OS errors met while writing outputs or caches.
_OS_HINTS = {
    "ENOSPC": "no space left on the device; free some space or choose another --out",
    "EDQUOT": "disk quota exceeded; free some space or choose another --out",
    "EFBIG": "file too large for this file system or its limits; choose another --out",
    "EROFS": "read-only file system; choose another --out",
    "EACCES": "permission denied; choose a folder you can write to",
    "EPERM": "operation not permitted; choose a folder you can write to",
    "ENOTDIR": "a file is in the way where a folder is needed; choose another --out",
    "EISDIR": "a folder is in the way where a file is needed; move it or use --filename",
    "ENOENT": "the folder cannot be created there; choose another --out",
}


def describe_os_error(err: OSError, with_path: bool = True) -> str:
    """One line for an OSError: its path, the plain reason and what to do.

    Raw `[Errno 28] No space left on device: '...'` says what but not what to do.
    """
    import errno

    name = errno.errorcode.get(err.errno or 0, "")
    reason = _OS_HINTS.get(name) or " ".join(str(err.strerror or err).split())
    where = err.filename if with_path else None
    return f"{where}: {reason}" if where is not None else reason
