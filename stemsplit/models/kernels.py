"""Which fp32 CPU kernel the shared ops (`models/ops.py`) use, measured on this CPU.

Two ops have two good kernels each whose order flips between CPUs: the matmul (oneDNN's
is 2.2x MKL's sgemm on an AVX-512 EPYC but only 1.15x with both capped at AVX2, and MKL
is Intel's own) and long-sequence attention (the blocked oneDNN form is 1.6x torch's
flash kernel with AVX-512 kernels, on par at AVX2). Rules written on one machine misjudge
the next (the AVX2 emulation predicted a 1.24x lead that a real AVX2 EPYC did not give),
so the engine times both kernels of each op on HTDemucs-sized shapes (~0.3 s) and keeps
the answer per CPU model, caps, torch version and thread count (`engine.kernel_cache`).
Until then, and with `STEMSPLIT_KERNELS=rules`, `rules()`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from stemsplit.capability import cpu

LINEAR_KERNELS = ("onednn", "aten")  # aten: F.linear, MKL's sgemm on x86
ATTENTION_KERNELS = ("blocked", "flash")  # flash: torch's scaled_dot_product_attention


@dataclass(frozen=True)
class KernelChoice:
    """The fp32 kernels, where the choice came from, and the milliseconds measured."""

    linear: str
    attention: str
    source: str = field(default="by rule", compare=False)
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return f"linear {self.linear}, attention {self.attention} ({self.source})"


@functools.cache
def rules() -> KernelChoice:
    """The choice without measuring: oneDNN's matmul where torch has it; the blocked
    attention where oneDNN has AVX-512 kernels. Made once (the capability is read once):
    every shared matmul asks `current()`."""
    caps = cpu()
    return KernelChoice("onednn" if caps.onednn_linear else "aten",
                        "blocked" if caps.avx512 and caps.onednn_linear else "flash")  # fmt: skip


_chosen: KernelChoice | None = None


def current() -> KernelChoice:
    """The kernels in force: the one `use` set, else `rules()`."""
    return _chosen if _chosen is not None else rules()


def chosen() -> KernelChoice | None:
    """The choice `use` put in force, None while the rules decide."""
    return _chosen


def use(choice: KernelChoice | None) -> None:
    """Put `choice` in force for this process (None: back to `rules()`)."""
    global _chosen
    if choice is not None and (choice.linear not in LINEAR_KERNELS
                               or choice.attention not in ATTENTION_KERNELS):  # fmt: skip
        raise ValueError(f"unknown kernels: {choice}")
    _chosen = choice


# How much faster the other kernel must run to replace the rule's: at par (the blocked
# and flash attention at AVX2 differ by 3 %) the choice must not flip with noise.
_MARGIN = 1.05


def faster(op: str, names: tuple[str, ...], rule: str, timings: dict[str, float]) -> str:
    """The kernel of `op` to use: the rule's, unless another ran 5 % faster."""
    best = min(names, key=lambda name: timings[f"{op}_{name}"])
    return best if timings[f"{op}_{best}"] * _MARGIN < timings[f"{op}_{rule}"] else rule
