"""`stemsplit models bench`: a zoo model (a tiny Conv-TasNet served by the local test
server) measured through the real command, kept in the cache, shown by `models`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import zoo_checkpoints as zc
from cli_run import stemsplit


def _tiny_zoo(server, model_dir: Path, tmp_path: Path, seed: int) -> dict[str, str]:
    """A one-card zoo (a tiny Conv-TasNet served on 127.0.0.1) and the environment
    that points the command at it."""
    payload = zc.state_dict_bytes(zc.tasnet_model(seed=seed))
    server.add("tiny_tasnet.th", payload)
    zoo = zc.write_zoo(tmp_path / "zoo.toml", {
        "tiny-tasnet": {"architecture": "conv_tasnet", "sources": zc.SOURCES,
                        "samplerate": 44100, "recipe": {"segment_seconds": 1.0},
                        "files": [{"url": server.url("tiny_tasnet.th"),
                                   "sha256": zc.sha256(payload)}]},
    })  # fmt: skip
    return {"STEMSPLIT_MODEL_DIR": str(model_dir), "STEMSPLIT_ZOO": str(zoo)}


def test_bench_measures_keeps_and_shows(server, model_dir: Path, tmp_path: Path) -> None:
    env = _tiny_zoo(server, model_dir, tmp_path, seed=2)

    before = stemsplit("models", "--json", env=env)
    (row,) = [r for r in json.loads(before.stdout) if r["name"] == "tiny-tasnet"]
    assert row["bench"] == []

    start = time.perf_counter()
    result = stemsplit("models", "bench", "tiny-tasnet", "--seconds", "3", "--device", "cpu",
                       "--json", env=env)  # fmt: skip
    wall = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    (measured,) = json.loads(result.stdout)
    assert measured["model"] == "tiny-tasnet" and measured["device"] == "cpu"
    assert measured["precision"] == "fp32" and measured["audio_seconds"] == 3.0
    # the timed run is part of the command's wall time, and takes some time
    assert 0 < measured["seconds_per_minute"] * 3 / 60 < wall
    assert 50 < measured["peak_rss_mb"] < 8000  # torch alone is more than 50 MB
    assert 0 <= measured["load_seconds"] < wall

    kept = json.loads((model_dir / "bench.json").read_text())
    assert kept["tiny-tasnet|cpu|fp32"]["seconds_per_minute"] == measured["seconds_per_minute"]
    after = stemsplit("models", "--json", env=env)
    (row,) = [r for r in json.loads(after.stdout) if r["name"] == "tiny-tasnet"]
    assert row["bench"][0]["seconds_per_minute"] == measured["seconds_per_minute"]
    table = stemsplit("models", env=env).stdout
    line = next(x for x in table.splitlines() if x.startswith("tiny-tasnet"))
    assert "s/min" in table and f"{measured['seconds_per_minute']:.1f} cpu" in line


def test_bench_refuses_a_bad_duration(model_dir: Path) -> None:
    result = stemsplit("models", "bench", "htdemucs", "--seconds", "0",
                       env={"STEMSPLIT_MODEL_DIR": str(model_dir)})  # fmt: skip
    assert result.returncode == 2
    assert "--seconds must be positive" in result.stderr


def test_dry_run_plans_costs_and_touches_nothing(server, model_dir: Path, tmp_path: Path
                                                 ) -> None:  # fmt: skip
    import numpy as np
    import soundfile

    env = _tiny_zoo(server, model_dir, tmp_path, seed=3)
    songs = tmp_path / "songs"
    songs.mkdir()
    noise = np.random.default_rng(1).standard_normal((6 * 44100, 2)).astype(np.float32) * 0.1
    soundfile.write(songs / "a.wav", noise[: 3 * 44100], 44100)
    soundfile.write(songs / "b.wav", noise, 44100)
    out = tmp_path / "out"
    args = (songs, "-m", "tiny-tasnet", "--device", "cpu", "-o", out, "--dry-run")

    unknown = stemsplit(*args, env=env)
    assert unknown.returncode == 0, unknown.stderr
    assert "2 to separate (0:09 of audio)" in unknown.stdout
    assert "stemsplit models bench tiny-tasnet" in unknown.stdout
    assert not out.exists() and not model_dir.exists() and server.state.requests == []

    model_dir.mkdir()  # figures as `models bench` keeps them (input to the estimate)
    (model_dir / "bench.json").write_text(json.dumps({"tiny-tasnet|cpu|fp32": {
        "model": "tiny-tasnet", "device": "cpu", "precision": "fp32",
        "seconds_per_minute": 12.0, "load_seconds": 2.0, "peak_rss_mb": 500.0,
        "audio_seconds": 30.0, "threads": 1, "measured": "2026-12-07T00:00:00+00:00"}}))
    planned = json.loads(stemsplit(*args, "--json", env=env).stdout)
    assert [t["action"] for t in planned["tracks"]] == ["separate", "separate"]
    assert planned["estimated_seconds"] == 12.0 * 9 / 60 + 2.0
    assert planned["peak_rss_mb"] == 500.0 and planned["unknown"] is None

    done = stemsplit(songs / "a.wav", "-m", "tiny-tasnet", "--device", "cpu", "-o", out, env=env)
    assert done.returncode == 0, done.stderr
    written = sorted(p for p in out.rglob("*") if p.is_file())
    again = json.loads(stemsplit(*args, "--json", env=env).stdout)
    by_input = {Path(t["input"]).name: t for t in again["tracks"]}
    assert by_input["a.wav"]["action"] == "skip" and by_input["b.wav"]["action"] == "separate"
    assert again["estimated_seconds"] == 12.0 * 6 / 60 + 2.0
    assert sorted(p for p in out.rglob("*") if p.is_file()) == written  # nothing touched
