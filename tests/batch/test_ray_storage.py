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
    with s3_server("songs", "clips", "stems") as env:
        yield env


@pytest.fixture(scope="module")
def cluster(s3):
    """A head and a second node on this machine (one CPU each), started after the S3
    environment is set: their workers inherit it, as a real cluster's nodes carry their
    own credentials. Ray's address file goes to the cluster's own folder, not /tmp/ray."""
    from ray.cluster_utils import Cluster

    folder = tempfile.mkdtemp(prefix="ssray-", dir="/tmp")
    os.mkdir(os.path.join(folder, "ray"))
    saved = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = folder
    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "temp_dir": folder, "include_dashboard": False})  # fmt: skip
    try:
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes()
        yield nodes.address
    finally:
        nodes.shutdown()
        if saved is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = saved
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


def _songs(folder: Path, keys: list[str], bucket: str = "songs") -> Path:
    """Tracks of 4 s under `folder`, uploaded to `bucket` by key."""
    for number, key in enumerate(keys):
        path = write_audio(folder / key, music(4.0, offset=3000 * number),
                           "PCM_24" if key.endswith(".flac") else "PCM_16")  # fmt: skip
        upload(path, bucket, key)
    return folder


def _start(*args: str | Path) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "stemsplit", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _when(run: subprocess.Popen, ready, act) -> int | None:
    """Once `ready()`, call `act(pid)` on a busy worker; the pid, or None if the run
    ended first."""
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if ready():
            pid = _busy_worker()
            if pid is not None:
                act(pid)
                return pid
        time.sleep(0.05)
    return None


def _objects(prefix: str) -> int:
    return client().list_objects_v2(Bucket="stems", Prefix=prefix).get("KeyCount", 0)


def _run_args(cluster: str, model: Path, source: str, out: str, *extra: str
              ) -> list[str | Path]:  # fmt: skip
    return [source, "-r", "--checkpoint", model, "--bit-depth", "float32", "-o", out,
            "--executor", "ray", "--ray-address", cluster, "--ray-workers", "2", "--json",
            *extra]  # fmt: skip


@pytest.mark.slow
def test_six_tracks_bucket_to_bucket_survive_a_killed_worker(cluster, s3, tiny_model, tmp_path):
    keys = [f"t{i}.wav" for i in range(4)] + ["live/t4.wav", "live/t5.flac"]
    music_dir = _songs(tmp_path / "music", keys)
    local = stemsplit(music_dir, "-r", "--checkpoint", tiny_model, "--bit-depth", "float32",
                      "-o", tmp_path / "local")  # fmt: skip
    assert local.returncode == 0, local.stderr

    args = _run_args(cluster, tiny_model, "s3://songs/", "s3://stems/sep")
    run = _start(*args)
    killed = _when(run, lambda: _objects("sep/"), lambda pid: os.kill(pid, signal.SIGKILL))
    stdout, stderr = run.communicate(timeout=300)
    assert killed is not None, f"the run ended before a worker could be killed: {stderr}"
    assert run.returncode == 0, stderr
    tracks = json.loads(stdout)["tracks"]
    assert {t["status"] for t in tracks} == {"done"}
    assert sorted(t["retries"] for t in tracks) == [0, 0, 0, 0, 0, 1], tracks
    throughput = json.loads(stdout)["throughput"]
    assert throughput["retries"] == 1 and throughput["workers"] == throughput["nodes"] == 2

    written = versions("stems")
    got = download_all("stems", tmp_path / "bucket")
    expected = {p.relative_to(tmp_path / "local").as_posix(): p
                for p in (tmp_path / "local").rglob("*") if p.is_file()}  # fmt: skip
    assert sorted(k for k in got if k.startswith("sep/")) == sorted(f"sep/{n}" for n in expected)
    assert sum(name.endswith(".wav") for name in expected) == 24
    for name, path in expected.items():
        if name.endswith(".wav"):
            assert np.abs(read(got[f"sep/{name}"]) - read(path)).max() <= 1e-6, name

    rerun = stemsplit(*args, env=s3)
    assert rerun.returncode == 0, rerun.stderr
    assert {t["status"] for t in json.loads(rerun.stdout)["tracks"]} == {"skipped"}
    assert versions("stems") == written  # a rerun writes no object


@pytest.mark.slow
def test_a_track_whose_retries_are_spent_fails_alone(cluster, s3, tiny_model, tmp_path):
    _songs(tmp_path, ["a.wav", "b.wav", "c.wav"], "clips")
    run = _start(*_run_args(cluster, tiny_model, "s3://clips/", "s3://stems/spent",
                            "--retries", "0"))  # fmt: skip
    killed = _when(run, lambda: True, lambda pid: os.kill(pid, signal.SIGKILL))
    stdout, stderr = run.communicate(timeout=300)
    assert killed is not None, stderr
    assert run.returncode == 1, stderr
    tracks = json.loads(stdout)["tracks"]
    failed = [t for t in tracks if t["status"] == "failed"]
    assert len(failed) == 1 and {t["status"] for t in tracks} == {"done", "failed"}
    assert "the worker running it was lost 1 time(s)" in failed[0]["error"]
    assert f"error: {failed[0]['error']}" in stderr
    # the lost track has no record in the bucket: a rerun redoes it, and only it
    records = [k for k, _ in versions("stems") if k.startswith("spent/") and k.endswith(".json")]
    assert len(records) == len(tracks) - 1


@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_work(cluster, s3, tiny_model, tmp_path):
    _songs(tmp_path, ["a.wav", "b.wav", "c.wav"], "clips")
    run = _start(*_run_args(cluster, tiny_model, "s3://clips/", "s3://stems/stopped"))
    assert _when(run, lambda: True, lambda pid: run.send_signal(signal.SIGINT)) is not None
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 30
    while _busy_worker() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _busy_worker() is None  # no worker goes on separating for a run that is gone
