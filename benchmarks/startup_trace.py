"""Run the `stemsplit` command in this process, printing when each start-up step ends.

    python benchmarks/startup_trace.py song.wav --checkpoint m.th -o out

Each line on stderr is `@startup <step> <time.time()>`; `benchmarks/startup.py` reads
them and subtracts the moment it started this process. Steps: `python` (this script
runs), `torch` (`import torch` done, in whichever thread), `checkpoint` (the first
checkpoint file read), `planned` (`api.plan_run` returned), `decoded` (the first block
of audio decoded), `spooled` (the input ready for the engine), `segment_start` and
`segment_done` (the first model call); steps of the forked start-up worker are named
`worker_<step>`. Hooks wrap functions as their modules load, so
nothing is imported earlier than the command itself would import it; this script
imports only `sys`, `time` and `importlib`.
"""

from __future__ import annotations

import time

_PYTHON = time.time()

import importlib.abc  # noqa: E402
import importlib.machinery  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, Callable  # noqa: E402

_seen: set[str] = set()
_STOP = os.environ.get("STEMSPLIT_TRACE_STOP")
_PID = os.getpid()


def stamp(step: str) -> None:
    """Print `step`'s time once (the first time it happens); leave at once after the
    step named by STEMSPLIT_TRACE_STOP (the rest of the run is not start-up)."""
    if os.getpid() != _PID:  # the start-up worker (stemsplit.startup), forked
        step = f"worker_{step}"
    if step not in _seen:
        _seen.add(step)
        print(f"@startup {step} {time.time():.6f}", file=sys.stderr, flush=True)
        if step == _STOP:
            os._exit(0)


def _around(owner: Any, name: str, before: str | None, after: str) -> None:
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            stamp(before)
        result = original(*args, **kwargs)
        stamp(after)
        return result

    setattr(owner, name, wrapped)


def _first_yield(owner: Any, name: str, step: str) -> None:
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        for item in original(*args, **kwargs):
            stamp(step)
            yield item

    setattr(owner, name, wrapped)


HOOKS: dict[str, Callable[[Any], None]] = {
    "torch": lambda module: stamp("torch"),
    "stemsplit.zoo.checkpoints": lambda m: _around(m, "read_torch_file", None, "checkpoint"),
    "stemsplit.api": lambda m: _around(m, "plan_run", None, "planned"),
    "stemsplit.audio.reader": lambda m: _first_yield(m, "_stream", "decoded"),
    "stemsplit.engine.source": lambda m: _around(m.SpoolSource, "__init__", None, "spooled"),
    "stemsplit.startup": lambda m: _around(m.EarlyDecode, "take", None, "spooled"),
    "stemsplit.engine.runner": lambda m: _around(m.ModelRunner, "__call__", "segment_start",
                                                 "segment_done"),
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `HOOKS[name](module)` right after module `name` has executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in HOOKS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            HOOKS[name](module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if __name__ == "__main__":
    stamp_python = f"@startup python {_PYTHON:.6f}"
    print(stamp_python, file=sys.stderr, flush=True)
    sys.meta_path.insert(0, _AfterImport())
    sys.argv[0] = "stemsplit"
    from stemsplit.cli import entry

    entry()
