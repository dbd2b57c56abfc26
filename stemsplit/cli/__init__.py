"""The `stemsplit` command: a Typer app whose default command is `separate`.

Each command lives in its own module and only parses options, calls `stemsplit.api`
(or the zoo/eval APIs) and renders. Nothing here may import torch at module level:
`stemsplit --help` must stay fast.
"""

from __future__ import annotations

import os
import sys
import threading

import typer

from stemsplit import __version__

app = typer.Typer(
    name="stemsplit",
    help="Split songs into stems (vocals, drums, bass, other, ...). `stemsplit FILE...` is "
    "short for `stemsplit separate FILE...` (`stemsplit separate --help` lists its options).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: rich's help renderer costs ~0.1 s of imports
    context_settings={"help_option_names": ["-h", "--help"]},
)

SUBCOMMANDS = {"separate", "models", "eval", "report", "recipes"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stemsplit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Split songs into stems. `stemsplit song.wav` = `stemsplit separate song.wav`."""


def _register() -> None:
    from stemsplit.cli import separate  # noqa: F401  (registers `separate`)

    for module in ("models", "eval", "report", "recipes"):
        try:
            __import__(f"stemsplit.cli.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"stemsplit.cli.{module}":
                raise


def _with_default_command(argv: list[str]) -> list[str]:
    """Insert `separate` when the first word is an input, not a command or root option."""
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in {"--help", "-h", "--version"}:
        return ["separate", *argv]
    return argv


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register()
    args = _with_default_command(list(sys.argv[1:] if argv is None else argv))
    app(args=args, prog_name="stemsplit")


def entry() -> None:
    """The `stemsplit` command (console script and `python -m stemsplit`): `main`, then,
    when no other thread is left and stdout/stderr are flushed, leave without the
    interpreter's teardown, which spent ~0.5 s in torch's finalizers and library
    destructors after every run (5 % of a 30 s separation). Files are all closed and
    renamed by then; an exception other than SystemExit still unwinds normally, and a
    live non-daemon thread (a library's) gets the normal shutdown that waits for it."""
    code: str | int | None = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    if isinstance(code, str):  # as the interpreter: the message, then status 1
        print(code, file=sys.stderr)
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)
