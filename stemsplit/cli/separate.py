"""`stemsplit separate INPUT...` (also the default command)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from stemsplit.cli import app


@app.command()
def separate(inputs: List[Path] = typer.Argument(..., help="Audio files or folders.")) -> None:
    """Split each input into stems."""
    raise typer.Exit(0)
