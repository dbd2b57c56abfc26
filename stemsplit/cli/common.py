"""Shared CLI helpers: the error table, consoles, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

_CONSOLES: dict[str, Any] = {}

# The options every listing command shares (declared once).
Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]

# What `eval --metrics` and `report --metrics` take (stemsplit.evaluate.METRICS; not
# imported: it needs numpy, the CLI's start-up does not).
METRICS_HELP = ("usdr, si_sdr, bss_sdr, msst_si_sdr, k_sdr, l1_freq, bleedless, fullness, "
                "aura_stft, aura_mrstft, log_wmse (as MSST's utils/metrics.py computes them; "
                "log_wmse needs mixture.<ext> beside the references), or all")  # fmt: skip


def split_commas(values: list[str] | None) -> list[str] | None:
    """`--metrics a,b --metrics c` -> [a, b, c]; None when none were given."""
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    return names or None


def __getattr__(name: str) -> Any:
    """`err_console` / `out_console`, built on first use: rich costs ~50 ms to import,
    which `stemsplit --help` must not pay (PEP 562 lazy module attributes)."""
    if name not in ("err_console", "out_console"):
        raise AttributeError(name)
    if name not in _CONSOLES:
        from rich.console import Console

        _CONSOLES[name] = Console(stderr=name == "err_console", highlight=False)
    return _CONSOLES[name]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    from rich.markup import escape

    __getattr__("err_console").print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def print_json(payload: Any) -> None:
    """Machine-readable output on stdout, nothing else on that stream."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def run_guarded(func, *args, debug: bool = False, **kwargs):
    """Call into the library; map StemsplitError to one stderr line and its exit code."""
    from stemsplit.errors import StemsplitError

    try:
        return func(*args, **kwargs)
    except StemsplitError as err:
        if debug:
            raise
        raise fail(str(err), err.exit_code) from None
