"""Cost before running: a model's time and memory on this machine (`stemsplit models bench`).

`measure` loads a planned separator's models (timed), warms up on one second of audio,
then times `seconds` of a fixed pseudo-random stereo signal (a network's cost does not
depend on what it hears) and reads the process's peak resident memory: Linux's VmHWM,
reset before loading (`/proc/self/clear_refs`), so it is this model's peak; elsewhere
`ru_maxrss`, the whole process's peak so far. Results are kept in
`<model cache>/bench.json`, the latest per (model, device, precision); `stemsplit models`
shows them. Nothing is estimated: a model never measured has no figure.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stemsplit.atomic import write_text_atomic

BENCH_FILE = "bench.json"


@dataclass(frozen=True)
class BenchResult:
    """One measurement: wall seconds to separate a minute of audio once loaded, the
    load time, and the peak resident memory while loading and separating."""

    model: str
    device: str
    precision: str
    seconds_per_minute: float
    load_seconds: float
    peak_rss_mb: float
    audio_seconds: float
    threads: int
    measured: str

    @property
    def key(self) -> str:
        return f"{self.model}|{self.device}|{self.precision}"


def _reset_peak_rss() -> bool:
    """Reset Linux's VmHWM to the current RSS; False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM (Linux), else ru_maxrss (kB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def measure(separator: Any, model: str, device: str, precision: str,
            seconds: float = 30.0) -> BenchResult:  # fmt: skip
    """Time `separator` (from `api.plan_run`, not yet loaded) on `seconds` of audio."""
    import numpy as np
    import torch

    _reset_peak_rss()
    rate = 44100
    signal = np.random.default_rng(0).standard_normal((2, int((seconds + 1) * rate)))
    signal = (0.1 * signal).astype(np.float32)
    start = time.perf_counter()
    separator.bundles  # noqa: B018 - loads the models (and builds their runners)
    load_seconds = time.perf_counter() - start
    separator.separate_array(signal[:, :rate], rate)  # warm-up: first-call costs
    start = time.perf_counter()
    separator.separate_array(signal[:, rate:], rate)
    elapsed = time.perf_counter() - start
    return BenchResult(
        model=model, device=device, precision=precision,
        seconds_per_minute=elapsed / seconds * 60, load_seconds=load_seconds,
        peak_rss_mb=_peak_rss_mb(), audio_seconds=seconds, threads=torch.get_num_threads(),
        measured=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )  # fmt: skip


def recorded(cache: Path) -> dict[str, dict[str, Any]]:
    """Every measurement kept in `cache/bench.json`, by "model|device|precision"."""
    try:
        data = json.loads((cache / BENCH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(result: BenchResult, cache: Path) -> Path:
    """Keep `result` in `cache/bench.json` (replacing an older one of the same key)."""
    data = recorded(cache)
    data[result.key] = asdict(result)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / BENCH_FILE
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
    return path


def for_model(cache: Path, model: str) -> list[dict[str, Any]]:
    """The measurements of `model`, fastest first."""
    found = [entry for entry in recorded(cache).values() if entry.get("model") == model]
    return sorted(found, key=lambda entry: entry.get("seconds_per_minute", float("inf")))
