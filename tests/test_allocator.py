"""`keep_large_blocks_on_heap`: a freed large block is reused, not faulted in afresh."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MB block twice and prints the page faults of the second time.
_PROBE = """
import resource, sys
from stemsplit.allocator import keep_large_blocks_on_heap
changed = keep_large_blocks_on_heap()
block = bytearray(64 * 2**20); del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(64 * 2**20)
print(changed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(**env: str) -> tuple[bool, int]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environment.pop("GLIBC_TUNABLES", None)
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**environment, **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    changed, faults = result.stdout.split()
    return changed == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_large_blocks_are_reused_not_faulted_in_again() -> None:
    changed, faults = _probe()
    if not changed:
        pytest.skip("not glibc")
    # 64 MB is 16384 4-KB pages: glibc's default maps them afresh (all faulted again)
    assert faults < 1000, faults
    untouched, default_faults = _probe(GLIBC_TUNABLES="")
    assert not untouched  # the user's malloc settings win
    assert default_faults > 10_000, default_faults
