"""`stemsplit.cli.entry`: the fast exit keeps the exit status, flushes output and never
cuts short a thread that is still working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_RUN = """
import sys, threading, time
from pathlib import Path
from stemsplit.cli import entry

marker = Path(sys.argv[1])

def late_write():
    time.sleep(0.5)
    marker.write_text("done")

threading.Thread(target=late_write).start()
sys.argv = ["stemsplit", *sys.argv[2:]]
entry()
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True)


def test_a_working_thread_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    result = _run(str(marker), "--version")
    assert result.returncode == 0 and result.stdout.startswith("stemsplit ")
    assert marker.read_text() == "done"


def test_exit_status_and_output_survive_the_fast_exit(tmp_path: Path) -> None:
    for args, status in ((["--version"], 0), (["separate", "--bogus"], 2)):
        result = subprocess.run([sys.executable, "-m", "stemsplit", *args],
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == status, result.stderr
    assert result.stderr.strip()  # the usage error reached stderr
    version = subprocess.run([sys.executable, "-m", "stemsplit", "--version"],
                             capture_output=True, text=True)  # fmt: skip
    assert version.stdout.startswith("stemsplit ")
