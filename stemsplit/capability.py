"""What this machine runs natively: the one place the engine, every fast path in the
models, `--precision auto` and `-v` ask.

torch's own answers are read, not only the CPU's flags: oneDNN and ATen honour
`ONEDNN_MAX_CPU_ISA` and `ATEN_CPU_CAPABILITY`, so a run capped at AVX2 takes the paths
an AVX2-only CPU takes (this is how CI exercises such a CPU on an AVX-512 one). A fast
path that needs a native kernel asks here first; without it, plain torch ops run.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

# CPU flags (/proc/cpuinfo spellings) that decide which kernels are fast here.
_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "avx_vnni",
          "amx_tile", "amx_bf16", "amx_int8")
# The environment variables that cap the kernels torch picks (named in `describe`).
_CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


@dataclass(frozen=True)
class CpuCapability:
    """The CPU's vector units as torch will use them in this process."""

    aten_isa: str  # ATen's kernels: "AVX512", "AVX2", "DEFAULT", "ZVECTOR", ...
    flags: frozenset[str]  # what the CPU reports (of `_FLAGS`; empty off Linux)
    onednn_linear: bool  # torch has oneDNN's fused linear (`mkldnn._linear_pointwise`)
    native_bf16: bool  # oneDNN runs bf16 natively (AVX512-BF16 or AMX), honouring its cap
    native_fp16: bool  # oneDNN runs fp16 natively (AVX512-FP16 or AMX-FP16)
    caps: tuple[str, ...] = ()  # "NAME=value" of the cap variables set

    @property
    def avx512(self) -> bool:
        """ATen runs AVX-512 kernels (oneDNN's fp32 matmuls then beat torch's flash
        attention; docs/performance.md)."""
        return self.aten_isa == "AVX512"

    @property
    def vnni(self) -> bool:
        """u8*s8 dot products summed in int32 (AVX512-VNNI, AMX) in the kernels this
        process runs, so int8 matmuls need no reduced activation range. Only with
        AVX-512 kernels: capped at AVX2, FBGEMM's int16 pair sums saturate (an HTDemucs
        fixture fell from 43 to 35.5 dB to fp32 with full-range activations)."""
        return self.avx512 and bool(self.flags & {"avx512_vnni", "amx_int8"})

    def native(self, precision: str) -> bool:
        """Whether `precision` ("fp32", "bf16", "fp16", "int8") runs natively here (int8:
        FBGEMM's kernels run on every x86 CPU with AVX2)."""
        return {"fp32": True, "bf16": self.native_bf16, "fp16": self.native_fp16,
                "int8": "avx2" in self.flags or not self.flags}[precision]  # fmt: skip

    def describe(self) -> str:
        """One line for `-v`: kernels, native low precisions, flags and caps."""
        native = [name for name, ok in (("bf16", self.native_bf16), ("fp16", self.native_fp16))
                  if ok]
        parts = [
            f"CPU kernels {self.aten_isa}",
            f"native {', '.join(native) if native else 'fp32 only'}",
            f"oneDNN linear {'yes' if self.onednn_linear else 'no'}",
            f"flags {' '.join(sorted(self.flags)) or 'unknown'}",
        ]
        if self.caps:
            parts.append("capped by " + " ".join(self.caps))
        return "; ".join(parts)


@functools.cache
def cpu() -> CpuCapability:
    """This process's CPU capability, read once."""
    import torch

    return CpuCapability(
        aten_isa=str(torch.backends.cpu.get_cpu_capability()),
        flags=_cpu_flags(),
        onednn_linear=bool(torch.backends.mkldnn.is_available())
        and hasattr(torch.ops.mkldnn, "_linear_pointwise"),
        native_bf16=_onednn_says("_is_mkldnn_bf16_supported"),
        native_fp16=_onednn_says("_is_mkldnn_fp16_supported"),
        caps=tuple(f"{name}={os.environ[name]}" for name in _CAPS if os.environ.get(name)),
    )


def device_native(device_type: str, precision: str) -> bool:
    """Whether a device of `device_type` runs `precision` natively."""
    if precision == "fp32":
        return True
    if device_type == "cpu":
        return cpu().native(precision)
    if device_type == "cuda":
        import torch

        return precision == "fp16" or bool(torch.cuda.is_bf16_supported())
    return precision == "fp16" if device_type == "mps" else False


def _onednn_says(query: str) -> bool:
    import torch

    try:
        return bool(getattr(torch.ops.mkldnn, query)())
    except (AttributeError, RuntimeError):
        return False  # torch cannot tell: take the plain-op paths, which run everywhere


def _cpu_flags() -> frozenset[str]:
    line = _cpuinfo("flags")
    return frozenset(line.split()) & frozenset(_FLAGS) if line is not None else frozenset()


@functools.cache
def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 9R14 ..."), for keeping per-CPU measurements."""
    name = _cpuinfo("model name")
    if name:
        return name
    import platform

    return platform.processor() or platform.machine() or "unknown"


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (None off Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
