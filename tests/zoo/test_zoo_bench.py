"""`stemsplit models bench`: a zoo model (a tiny Conv-TasNet served by the local test
server) measured through the real command, kept in the cache, shown by `models`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import zoo_checkpoints as zc
from cli_run import stemsplit


def test_bench_measures_keeps_and_shows(server, model_dir: Path, tmp_path: Path) -> None:
    payload = zc.state_dict_bytes(zc.tasnet_model(seed=2))
    server.add("tiny_tasnet.th", payload)
    zoo = zc.write_zoo(tmp_path / "zoo.toml", {
        "tiny-tasnet": {"architecture": "conv_tasnet", "sources": zc.SOURCES,
                        "samplerate": 44100, "recipe": {"segment_seconds": 1.0},
                        "files": [{"url": server.url("tiny_tasnet.th"),
                                   "sha256": zc.sha256(payload)}]},
    })  # fmt: skip
    env = {"STEMSPLIT_MODEL_DIR": str(model_dir), "STEMSPLIT_ZOO": str(zoo)}

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
