"""Logging for the CLI: the library logs plainly; the CLI renders with rich."""

from __future__ import annotations

import logging

from rich.logging import RichHandler

from stemsplit.cli.common import err_console


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Warnings by default, DEBUG with --verbose; --quiet hides progress, not warnings."""
    level = logging.DEBUG if verbose else logging.WARNING
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    root = logging.getLogger("stemsplit")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
