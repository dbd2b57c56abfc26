"""Cross-track batching through the real command: a folder of short real-music clips run
with their chunks pooled across tracks (`--batch-size` chunks per pass) gives each clip
the stems of a run over that clip alone.

The pooled run is `python -m stemsplit FOLDER`; each reference is a one-track run of the
same options (`stemsplit.api.separate` on one file, one torch thread as the command
has), written as float32 WAV so the comparison sees the engine's numbers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from batch_cli import read, stemsplit, tiny_demucs_checkpoint, write_audio
from carried import MIXTURE

MSST = Path(__file__).resolve().parents[1] / "data" / "msst"
UVR_MIXTURE = Path(__file__).resolve().parents[1] / "data" / "uvr" / "mixture.flac"
EXACT = ["--format", "wav", "--bit-depth", "float32", "--clip", "none"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven clips of 0.5-3 s cut at random places from two real songs (44.1 kHz)."""
    import soundfile

    songs = [soundfile.read(str(p), dtype="float32", always_2d=True)[0]
             for p in (MIXTURE, UVR_MIXTURE)]  # fmt: skip
    source = np.concatenate(songs)
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("clips")
    for index in range(7):
        frames = int(rng.uniform(0.5, 3.0) * 44100)
        start = int(rng.integers(0, len(source) - frames))
        write_audio(folder / f"clip{index}.wav", source[start : start + frames])
    return folder


def _one_track_runs(clips: Path, out: Path, model_args: dict, **engine: object) -> None:
    """Each clip alone, through the API's one-track path, in this process."""
    import torch

    from stemsplit import api

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for clip in sorted(clips.glob("*.wav")):
            (result,) = api.separate(clip, out=out, format="wav", bit_depth="float32",
                                     clip="none", **model_args, **engine)  # fmt: skip
            assert result.status == "done", result.error
    finally:
        torch.set_num_threads(threads)


def _assert_same_stems(pooled: Path, single: Path, count: int) -> None:
    files = sorted(pooled.rglob("*.wav"))
    assert len(files) == count
    for path in files:
        mine, alone = read(path), read(single / path.relative_to(pooled))
        assert mine.shape == alone.shape, path
        assert np.abs(mine - alone).max() <= 1e-6, path


def _assert_shared_passes(log: str) -> None:
    """The pooled path ran, and some forward pass held the chunks of several tracks (a
    pass fills up with the rows of the next calls, splitting the last, and waits for a
    track admitted in the room a finished one left: so two tracks in flight together
    always meet in a pass, whatever the threads' timing)."""
    found = re.search(r"(\d+) forward passes \((\d+) shared by several tracks\)", log)
    assert found, log
    assert int(found[2]) > 0, found[0]


def _cli_args(model_args: dict) -> list[str]:
    args = ["--checkpoint", str(model_args["checkpoint"])]
    if "config" in model_args:
        args += ["--config", str(model_args["config"])]
    return args


def test_demucs_clips_pooled_equal_one_track_runs(clips: Path, tmp_path: Path) -> None:
    """HDemucs: track mean/std normalisation, a shift, last chunks of their own lengths
    (HDemucs' input length follows the chunk's: those pass in queues by shape)."""
    model = {"checkpoint": tiny_demucs_checkpoint(tmp_path / "tiny.th")}
    engine = ["--batch-size", "4", "--shifts", "1", "--seed", "3"]
    run = stemsplit(clips, *_cli_args(model), "-o", tmp_path / "pooled", *EXACT, *engine,
                    "-v")  # fmt: skip
    assert run.returncode == 0, run.stderr
    _assert_shared_passes(run.stderr)
    _one_track_runs(clips, tmp_path / "single", model, batch_size=4, shifts=1, seed=3)
    _assert_same_stems(tmp_path / "pooled", tmp_path / "single", 7 * 4)


def test_msst_fades_pooled_equal_one_track_runs(clips: Path, tmp_path: Path) -> None:
    """BS-RoFormer (MSST): reflect borders and fades decided per batch of the track's own
    chunks, so `--batch-size 3` groups each track's chunks as a one-track run does."""
    folder = MSST / "bs_roformer_experimental"
    model = {"checkpoint": folder / "model.ckpt", "config": folder / "config.yaml"}
    run = stemsplit(clips, *_cli_args(model), "-o", tmp_path / "pooled", *EXACT,
                    "--batch-size", "6", "-v")  # fmt: skip
    assert run.returncode == 0, run.stderr
    _assert_shared_passes(run.stderr)
    _one_track_runs(clips, tmp_path / "single", model, batch_size=6)
    stems = len(list((tmp_path / "single").rglob("*.wav")))
    assert stems >= 7
    _assert_same_stems(tmp_path / "pooled", tmp_path / "single", stems)


@pytest.mark.slow  # two runs of the command (~30 s on a loaded 2-core machine)
def test_ctrl_c_stops_every_track_in_flight(clips: Path, tmp_path: Path) -> None:
    """SIGINT while several tracks are in flight: exit 130, one line, no temporary file;
    a track is either complete (its four stems and record) or absent; a rerun finishes."""
    from rel_cli import leftovers

    model = tiny_demucs_checkpoint(tmp_path / "tiny.th")
    out = tmp_path / "out"
    args = [clips, "--checkpoint", model, "-o", out, "--batch-size", "4", "-q"]
    process = subprocess.Popen([sys.executable, "-m", "stemsplit", *map(str, args)],
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not list(out.rglob(".*.partial-*")):  # writers open: tracks in flight
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the run never started writing"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130, stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "interrupted: partial files removed; rerun to finish"]
    assert not leftovers(out)
    for folder in [p for p in out.rglob("clip*") if p.is_dir()]:
        assert sorted(p.stem for p in folder.glob("*.wav")) == ["bass", "drums", "other",
                                                                 "vocals"], folder
    rerun = stemsplit(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.rglob("*.wav"))) == 7 * 4
