"""The fp32 kernels measured on this machine (`probe`), kept on disk.

The probe costs ~0.3 s, so it runs once per CPU model, capability caps, torch version
and thread count; the answers live in `kernels.json` in the model cache, beside the
figures of `stemsplit models bench`. `STEMSPLIT_KERNELS=rules` skips it (the fixed rules
of `models.kernels.rules`); `STEMSPLIT_KERNELS=measure` (the default) measures or reads.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from stemsplit.atomic import write_text_atomic
from stemsplit.capability import cpu, cpu_model
from stemsplit.errors import UsageError
from stemsplit.models import kernels, ops
from stemsplit.zoo import fetch

log = logging.getLogger(__name__)

KERNELS_ENV = "STEMSPLIT_KERNELS"
CACHE_FILE = "kernels.json"
_MODES = ("measure", "rules")
_in_force: set[str] = set()  # machine keys whose choice this process has put in force


def machine_key() -> str:
    """What a measured choice holds for: this CPU model as torch uses it, torch, threads."""
    caps = cpu()
    return " | ".join([cpu_model(), f"ATen {caps.aten_isa}", *caps.caps,
                       f"torch {torch.__version__}", f"{torch.get_num_threads()} threads"])  # fmt: skip


def choose_kernels(cache: Path | None = None) -> kernels.KernelChoice:
    """Put this machine's fp32 kernels in force: read from the cache, else measured now
    (and kept there when the cache can be written)."""
    mode = os.environ.get(KERNELS_ENV, "measure").strip().lower() or "measure"
    if mode not in _MODES:
        raise UsageError(f"{KERNELS_ENV}={mode!r}: use one of {', '.join(_MODES)}")
    if mode == "rules":
        kernels.use(None)
        return kernels.current()
    key = machine_key()
    if key in _in_force:
        return kernels.current()
    path = (cache if cache is not None else fetch.cache_dir()) / CACHE_FILE
    table = _read(path)
    choice = _choice(table.get(key), path)
    if choice is None:
        choice = probe()
        table[key] = {"linear": choice.linear, "attention": choice.attention,
                      "timings_ms": choice.timings_ms}  # fmt: skip
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(table, indent=1, sort_keys=True) + "\n")
        except OSError as err:  # a read-only cache: measured again next run
            log.debug("kernel choice not kept in %s: %s", path, err)
    kernels.use(choice)
    _in_force.add(key)
    log.info("fp32 kernels on this CPU: %s", choice.describe())
    return choice


def _read(path: Path) -> dict[str, Any]:
    """The cache file's table; a missing or unreadable file is an empty one."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) else {}


def _choice(entry: Any, path: Path) -> kernels.KernelChoice | None:
    """A cache entry as a choice; None for anything this version cannot use."""
    if not isinstance(entry, dict):
        return None
    linear, attention = entry.get("linear"), entry.get("attention")
    if linear not in kernels.LINEAR_KERNELS or attention not in kernels.ATTENTION_KERNELS:
        return None
    timings = entry.get("timings_ms")
    return kernels.KernelChoice(linear, attention, f"measured before, kept in {path}",
                                timings if isinstance(timings, dict) else {})  # fmt: skip


def probe() -> kernels.KernelChoice:
    """Times each op's kernels in this process (its threads): an HTDemucs feed-forward
    matmul ([1344, 512] x [512, 2048]) and one cross-attention head pair (1344 x 1344,
    depth 64); the rule's kernel stays unless the other is 5 % faster. Leaves the choice
    in force as it was."""
    rule = kernels.rules()
    if not cpu().onednn_linear:
        return rule
    generator = torch.Generator().manual_seed(0)
    x, w = torch.randn(1344, 512, generator=generator), torch.randn(2048, 512, generator=generator)
    q, k, v = (torch.randn(1, 2, 1344, 64, generator=generator) for _ in range(3))
    timings: dict[str, float] = {}
    before = kernels.chosen()
    try:
        with torch.inference_mode():
            for linear in kernels.LINEAR_KERNELS:
                kernels.use(kernels.KernelChoice(linear, "flash"))
                timings[f"linear_{linear}"] = best_ms(lambda: ops.fast_linear(x, w))
            for attention in kernels.ATTENTION_KERNELS:
                kernels.use(kernels.KernelChoice("onednn", attention))
                timings[f"attention_{attention}"] = best_ms(lambda: ops.fast_attention(q, k, v))
    finally:
        kernels.use(before)
    return kernels.KernelChoice(
        kernels.faster("linear", kernels.LINEAR_KERNELS, rule.linear, timings),
        kernels.faster("attention", kernels.ATTENTION_KERNELS, rule.attention, timings),
        "measured now",
        {name: round(value, 3) for name, value in timings.items()},
    )


def best_ms(run: Callable[[], object], repeats: int = 3) -> float:
    """`run`'s fastest time in ms over `repeats` calls after one warm-up (in which
    oneDNN builds and caches its primitive)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1e3
