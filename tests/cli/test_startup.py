"""The start-up overlap (`stemsplit.startup`): the input decoded by a worker while torch
imports gives the same bytes as the usual decode, and no run leaves a spool file behind
(done, failed or interrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import stemsplit

MIXTURE = Path(__file__).resolve().parents[1] / "data" / "uvr" / "mixture.flac"
ON = {"STEMSPLIT_STARTUP_OVERLAP": "1"}  # off by default (stemsplit/startup.py says why)
DEFAULT = {"STEMSPLIT_STARTUP_OVERLAP": ""}  # as if unset
TAKEN = "decoded during start-up"  # the -v line when the run takes the worker's decode

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the overlap forks: Linux only")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("demucs")
    import zoo_checkpoints as zc

    folder = tmp_path_factory.mktemp("model")
    return zc.save_bytes(folder / "tiny.th", zc.demucs_package_bytes(zc.demucs_model()))


def _leftovers(*folders: Path) -> list[Path]:
    """Spool files and folders of either decode (the batch's and the worker's)."""
    return [p for folder in folders if folder.exists() for p in folder.rglob("*")
            if "stemsplit" in p.name and (".f32" in p.name or p.is_dir())]  # fmt: skip


def _env(tmp: Path, **more: str) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return {"TMPDIR": str(tmp), **more}


def test_files_are_the_same_with_the_overlap_on_and_off(tmp_path: Path, tiny_checkpoint: Path):
    stems = {}
    for name, extra in (("on", ON), ("off", DEFAULT)):
        out = tmp_path / name
        run = stemsplit(MIXTURE, "--checkpoint", tiny_checkpoint, "-o", out, "-v",
                        env=_env(tmp_path / f"tmp-{name}", **extra))  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert (TAKEN in run.stderr) == (name == "on"), run.stderr
        stems[name] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.wav")}
        assert _leftovers(out, tmp_path / f"tmp-{name}") == []
    assert len(stems["on"]) == 4
    assert stems["on"] == stems["off"]


def test_stdout_is_the_same_with_the_overlap_on_and_off(tmp_path: Path, tiny_checkpoint: Path):
    streams = {}
    for name, extra in (("on", ON), ("off", DEFAULT)):
        run = subprocess.run(
            [sys.executable, "-m", "stemsplit", str(MIXTURE), "--checkpoint",
             str(tiny_checkpoint), "-o", "-", "-s", "vocals", "-v"],
            capture_output=True, timeout=300, cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1",
                 **_env(tmp_path / f"tmp-{name}", **extra)},
        )  # fmt: skip
        stderr = run.stderr.decode()
        assert run.returncode == 0, stderr
        assert (TAKEN in stderr) == (name == "on"), stderr
        streams[name] = run.stdout
        assert _leftovers(tmp_path / f"tmp-{name}") == []
    assert streams["on"][:4] == b"RIFF" and len(streams["on"]) > 44
    assert streams["on"] == streams["off"]
    assert not (tmp_path / "separated").exists()


def test_a_failed_run_leaves_nothing(tmp_path: Path):
    broken = tmp_path / "broken.th"
    broken.write_bytes(b"PK\x03\x04 not a checkpoint" * 100)
    run = stemsplit(MIXTURE, "--checkpoint", broken, cwd=tmp_path,
                    env=_env(tmp_path / "tmp", **ON))
    assert run.returncode != 0
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("error:"), run.stderr
    assert not (tmp_path / "separated").exists()  # the worker's spool folder went too
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_during_start_up_leaves_nothing(tmp_path: Path, tiny_checkpoint: Path):
    """A minute of music: the worker is still decoding when Ctrl-C comes."""
    audio, rate = sf.read(MIXTURE, dtype="float32", always_2d=True)
    song = tmp_path / "song.wav"
    sf.write(song, np.tile(audio, (20, 1)), rate)
    process = subprocess.Popen(
        [sys.executable, "-m", "stemsplit", str(song), "--checkpoint", str(tiny_checkpoint)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200", **_env(tmp_path / "tmp", **ON)},
    )  # fmt: skip
    time.sleep(0.8)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "separated").exists()
