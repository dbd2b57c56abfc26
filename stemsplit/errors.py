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
