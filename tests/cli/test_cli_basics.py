"""The command itself: help, version, default command, start-up without torch."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from stemsplit.cli import main
sys.argv = ["stemsplit", *{args!r}]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "numpy", "soundfile", "av", "soxr", "rich.console",
                            "rich.markdown") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


def _probe(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True, text=True, timeout=60,
    )
    return out.stdout


def test_help_and_version_do_not_import_torch():
    for args in (["--help"], ["--version"], ["separate", "--help"], ["models", "--help"]):
        stdout = _probe(*args)
        heavy = stdout.rsplit("HEAVY=", 1)[1].strip()
        assert "torch" not in heavy.split(","), (args, heavy)


def test_help_does_not_import_rich():
    """rich (and typer's rich help renderer) cost ~0.2 s; `--help` must stay <= 0.3 s."""
    for args in (["--help"], ["separate", "--help"]):
        heavy = _probe(*args).rsplit("HEAVY=", 1)[1].strip()
        assert heavy == "", (args, heavy)


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "stemsplit", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.startswith("stemsplit ")


def test_missing_input_is_one_line_and_exit_1(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "stemsplit", str(tmp_path / "nope.wav"), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode in (1, 2)
    assert "Traceback" not in out.stderr
    assert "nope.wav" in out.stderr


def test_bad_option_value_is_usage_error(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"")
    out = subprocess.run(
        [sys.executable, "-m", "stemsplit", str(wav), "--filename", "{track}.{ext}"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "{stem}" in out.stderr
    assert "Traceback" not in out.stderr
