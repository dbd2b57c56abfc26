"""Batches through the real command: folder trees, bad files, resume, kill, Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from batch_cli import RATE, music, read, stemsplit, write_audio
from cli_run import label

STEMS = ("drums", "bass", "other", "vocals")


def _tree(root: Path) -> dict[str, Path]:
    """Good tracks in nested folders, a corrupt WAV, text named .mp3, a non-audio file."""
    files = {
        "top": write_audio(root / "top.wav", music()),
        "mid": write_audio(root / "album" / "mid.flac", music(offset=5000), "PCM_24"),
        "deep": write_audio(root / "album" / "cd2" / "deep.wav", 0.5 * music(offset=9000)),
    }
    corrupt = root / "album" / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\xff\xff\xff\xffWAVEfmt " + bytes(range(7, 71)))
    files["corrupt"] = corrupt
    files["text"] = root / "album" / "cd2" / "liner-notes.mp3"
    files["text"].write_text("not audio at all\n")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff")  # not an audio extension: never a track
    return files


def _summary(out: subprocess.CompletedProcess) -> dict:
    assert "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout)


def _statuses(summary: dict) -> dict[str, str]:
    return {Path(t["input"]).name: t["status"] for t in summary["tracks"]}


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


@pytest.fixture(scope="module")
def tree_run(tiny_model, tmp_path_factory):
    """One batch over the tree (the tests below rerun it): files, out folder, result."""
    root = tmp_path_factory.mktemp("tree")
    files = _tree(root / "music")
    out = root / "out"
    first = stemsplit(root / "music", "-r", "--checkpoint", tiny_model, "-o", out, "--json")
    return files, out, first


def test_folder_tree_right_outputs_bad_files_reported_exit_1(tree_run, tiny_model):
    files, out, first = tree_run
    model = out / label(tiny_model)
    assert first.returncode == 1, first.stderr
    summary = _summary(first)
    assert _statuses(summary) == {
        "top.wav": "done", "mid.flac": "done", "deep.wav": "done",
        "corrupt.wav": "failed", "liner-notes.mp3": "failed",
    }  # fmt: skip
    assert (summary["done"], summary["skipped"], summary["failed"]) == (3, 0, 2)
    assert summary["audio_seconds"] == pytest.approx(3 * (RATE + 37) / RATE, abs=1e-3)
    assert summary["speed"] > 0
    # each bad input: one line on stderr naming it
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("corrupt.wav" in e for e in errors) and any("liner-notes.mp3" in e for e in errors)
    # the input tree is mirrored under OUT/<model>/
    mirrored = {"top": "top", "mid": "album/mid", "deep": "album/cd2/deep"}
    assert sorted(str(p.relative_to(model)) for p in model.rglob("*")
                  if p.is_dir()) == ["album", "album/cd2", "album/cd2/deep", "album/mid", "top"]
    for key in ("top", "mid", "deep"):
        track = model / mirrored[key]
        frames = len(read(files[key]))
        assert sorted(p.name for p in track.iterdir()) == sorted(
            [f"{s}.wav" for s in STEMS] + ["stemsplit.json"]
        )
        for stem in STEMS:
            assert read(track / f"{stem}.wav").shape == (frames, 2)
        meta = json.loads((track / "stemsplit.json").read_text())
        assert meta["models"] == [label(tiny_model)]
        assert meta["duration"] == pytest.approx(frames / RATE, abs=1e-3)
        assert set(meta) >= {"settings", "speed", "stems"}
    assert not _temporaries(out)


def test_rerun_skips_everything_done(tiny_model, tree_run):
    files, out, _ = tree_run
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    again = stemsplit(files["top"].parent, "-r", "--checkpoint", tiny_model, "-o", out, "--json")
    assert again.returncode == 1
    assert _statuses(_summary(again)) == {
        "top.wav": "skipped", "mid.flac": "skipped", "deep.wav": "skipped",
        "corrupt.wav": "failed", "liner-notes.mp3": "failed",
    }  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")} == stamp


def test_overwrite_redoes_a_done_track(tiny_model, tree_run):
    files, out, _ = tree_run
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    redo = stemsplit(files["top"], "--checkpoint", tiny_model, "-o", out,
                     "--overwrite", "--json", "-j", "0")  # fmt: skip
    assert redo.returncode == 0, redo.stderr
    assert _statuses(_summary(redo)) == {"top.wav": "done"}
    changed = {p for p in stamp if p.stat().st_mtime_ns != stamp[p]}
    assert changed == {out / label(tiny_model) / "top" / f"{s}.wav" for s in STEMS}


def test_inputs_that_would_write_the_same_files_fail_before_any_work(tmp_path):
    write_audio(tmp_path / "a" / "song.wav", music(0.1))
    write_audio(tmp_path / "b" / "song.flac", music(0.1))
    out = tmp_path / "out"
    result = stemsplit(tmp_path / "a", tmp_path / "b", "-o", out, "--checkpoint",
                       tmp_path / "never-loaded.th")  # fmt: skip
    assert result.returncode == 2
    assert "would both write" in result.stderr and "{trackext}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def _identical_copies(folder: Path, count: int) -> list[Path]:
    audio = music()
    return [write_audio(folder / f"t{i}.wav", audio) for i in range(count)]


@pytest.mark.slow
def test_sigkill_midway_then_rerun_finishes_cleanly(tiny_model, tmp_path):
    tracks = _identical_copies(tmp_path / "in", 4)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "stemsplit", tmp_path / "in", "--checkpoint", tiny_model,
            "-o", out, "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(list(map(str, args)), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    first_done = out / label(tiny_model) / "t0" / "stemsplit.json"
    deadline = time.monotonic() + 240
    while not first_done.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    # the killed run left its temporaries: decoded spools (and likely partial stems)
    assert _temporaries(out)

    rerun = stemsplit(tmp_path / "in", "--checkpoint", tiny_model, "-o", out, "--json")
    assert rerun.returncode == 0, rerun.stderr
    statuses = _statuses(_summary(rerun))
    assert statuses["t0.wav"] == "skipped"
    assert set(statuses.values()) <= {"done", "skipped"}
    assert not _temporaries(out)
    # all four inputs are the same audio: every track's stems must be the same, whole files
    frames = len(read(tracks[0]))
    for stem in STEMS:
        reference = read(out / label(tiny_model) / "t0" / f"{stem}.wav")
        assert reference.shape == (frames, 2)
        for track in tracks[1:]:
            np.testing.assert_array_equal(read(out / label(tiny_model) / track.stem / f"{stem}.wav"),
                                          reference)  # fmt: skip


@pytest.mark.slow
def test_ray_executor_writes_what_the_local_executor_writes(tiny_model, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'stemsplit-cli[ray]'")
    inputs = tmp_path / "in"
    write_audio(inputs / "one.wav", music())
    write_audio(inputs / "two.flac", music(offset=7000), "PCM_24")
    write_audio(inputs / "three.wav", music(offset=20000))
    local = stemsplit(inputs, "--checkpoint", tiny_model, "-o", tmp_path / "local", "--json")
    assert local.returncode == 0, local.stderr
    # Ray's session folder holds unix sockets (107-byte paths): a short folder, removed after
    ray_tmp = tempfile.mkdtemp(prefix="ssray-", dir="/tmp")
    try:
        remote = stemsplit(inputs, "--checkpoint", tiny_model, "-o", tmp_path / "ray",
                           "--executor", "ray", "--ray-workers", "2", "--json",
                           env={"RAY_TMPDIR": ray_tmp})  # fmt: skip
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert remote.returncode == 0, remote.stderr
    assert set(_statuses(_summary(remote)).values()) == {"done"}
    local_files = sorted(p.relative_to(tmp_path / "local")
                         for p in (tmp_path / "local").rglob("*.wav"))  # fmt: skip
    ray_files = sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.wav"))
    assert ray_files == local_files and len(local_files) == 12
    for relative in local_files:
        np.testing.assert_allclose(read(tmp_path / "ray" / relative),
                                   read(tmp_path / "local" / relative), atol=2 / 32768)
    assert not _temporaries(tmp_path / "ray")


def test_ray_executor_without_ray_says_how_to_install(tmp_path):
    write_audio(tmp_path / "a.wav", music(0.1))
    blocker = tmp_path / "no_ray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray" / "__init__.py").write_text("raise ImportError('ray is hidden here')\n")
    result = stemsplit(tmp_path / "a.wav", "--executor", "ray", "--checkpoint",
                       tmp_path / "missing.th", "-o", tmp_path / "out",
                       env={"PYTHONPATH": str(blocker)})  # fmt: skip
    assert result.returncode == 2
    assert "pip install 'stemsplit-cli[ray]'" in result.stderr
    assert "Traceback" not in result.stderr
