"""Scale-out's bar through the real command: tracks in an S3 bucket (moto on 127.0.0.1),
stems to another, on a local Ray cluster, one worker SIGKILLed mid-run."""

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
from batch_cli import music, read, stemsplit, write_audio
from moto_s3 import client, download_all, s3_server, upload, versions

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'stemsplit-cli[ray]'")


@pytest.fixture(scope="module")
def s3():
    with s3_server("songs", "stems") as env:
        yield env


@pytest.fixture(scope="module")
def cluster(s3):
    """A local cluster started after the S3 environment is set: its workers inherit it,
    as the nodes of a real cluster carry their own credentials."""
    folder = tempfile.mkdtemp(prefix="ssray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=folder)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def _descendants(root: int) -> set[int]:
    """Pids of `root`'s descendants (read from /proc: the cluster this test started)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _busy_worker() -> int | None:
    """The pid of one of our Ray workers while it runs a track (`ray::Worker.process`)."""
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::Worker.process"):
            return pid
    return None


@pytest.mark.slow
def test_six_tracks_bucket_to_bucket_survive_a_killed_worker(cluster, s3, tiny_model, tmp_path):
    music_dir = tmp_path / "music"
    keys = [f"t{i}.wav" for i in range(4)] + ["live/t4.wav", "live/t5.flac"]
    for number, key in enumerate(keys):
        path = write_audio(music_dir / key, music(4.0, offset=3000 * number),
                           "PCM_24" if key.endswith(".flac") else "PCM_16")  # fmt: skip
        upload(path, "songs", key)
    settings = ["--checkpoint", tiny_model, "--bit-depth", "float32"]
    local = stemsplit(music_dir, "-r", *settings, "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr

    args = ["s3://songs/", "-r", *settings, "-o", "s3://stems/sep", "--executor", "ray",
            "--ray-address", cluster, "--ray-workers", "2", "--json"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, "-m", "stemsplit", *map(str, args)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        if client().list_objects_v2(Bucket="stems").get("KeyCount", 0):  # a first stem is up
            killed = _busy_worker()
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=300)
    assert killed is not None, f"the run ended before a worker could be killed: {stderr}"
    assert run.returncode == 0, stderr
    tracks = json.loads(stdout)["tracks"]
    assert {t["status"] for t in tracks} == {"done"}
    assert sorted(t["retries"] for t in tracks) == [0, 0, 0, 0, 0, 1], tracks
    throughput = json.loads(stdout)["throughput"]
    assert throughput["retries"] == 1 and throughput["workers"] == 2

    written = versions("stems")
    got = download_all("stems", tmp_path / "bucket")
    expected = {p.relative_to(tmp_path / "local").as_posix(): p
                for p in (tmp_path / "local").rglob("*") if p.is_file()}  # fmt: skip
    assert sorted(got) == sorted(f"sep/{name}" for name in expected)
    assert sum(name.endswith(".wav") for name in expected) == 24
    for name, path in expected.items():
        if name.endswith(".wav"):
            assert np.abs(read(got[f"sep/{name}"]) - read(path)).max() <= 1e-6, name

    rerun = stemsplit(*args, env=s3)
    assert rerun.returncode == 0, rerun.stderr
    assert {t["status"] for t in json.loads(rerun.stdout)["tracks"]} == {"skipped"}
    assert versions("stems") == written  # a rerun writes no object
