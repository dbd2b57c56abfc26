"""Keep glibc's malloc from handing every large tensor fresh pages from the kernel.

glibc serves blocks above its mmap threshold (128 KB, adapting up to 32 MB) with a fresh
`mmap` and returns them on `free`. A network's activations are 10-400 MB each and are
freed within a layer, so every one of them came back as new zero-filled pages: a
BS-RoFormer bf16 chunk spent more time in page faults than in its matmuls (5.3 M faults
and 8.9 s of system time for three 8 s forwards at depth 2; 4.4 -> 2.6 s a forward with
large blocks kept on the heap, before its axial passes were grouped; HTDemucs 6-9 % a
segment; SCNet and MDX23C 30-35 %: docs/performance.md).

Kept on the heap, freed blocks are reused by the next layer. The price is peak RSS: a
heap can't give back the middle of its range, and freed memory stays mapped for reuse
(HTDemucs and the grouped RoFormers: unchanged; SCNet 30 s 1.18 -> 1.45 GB for 36.6 ->
23.8 s; MDX23C 2.1 -> 3.6 GB for 348 -> 248 s).
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Free memory at the heap's top that is kept rather than given back (above it glibc
# trims): as much as mallopt's int allows. MDX23C's GB-sized layers were trimmed and
# faulted back in at 512 MB (10 s of audio: 6.2 M faults, 10 s of system time; kept:
# 0.8 M, 1.5 s; same peak RSS). The memory is reused by the next layer or track.
_KEPT_FREE = 2**31 - 1
# A user's own malloc settings win.
_USER_SETTINGS = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "GLIBC_TUNABLES",
)


def keep_large_blocks_on_heap() -> bool:
    """Serve large blocks from the heap and keep up to 2 GB of freed memory for reuse,
    on Linux with glibc unless the user set malloc's environment variables. Process-
    wide: the CLI calls it before separating; a program embedding stemsplit may too
    (`stemsplit.api.keep_large_blocks_on_heap`). Returns whether it changed anything."""
    if not sys.platform.startswith("linux") or not _glibc():
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own libc
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE))


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):
        return False
