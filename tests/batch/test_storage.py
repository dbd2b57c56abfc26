"""Object storage through the real command: a moto S3 server on 127.0.0.1 as the bucket."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from batch_cli import music, read, stemsplit, write_audio
from moto_s3 import download_all, s3_server, upload, versions


def library(folder: Path) -> dict[str, Path]:
    """Three tracks, two of them under a prefix, by key."""
    return {
        "top.wav": write_audio(folder / "top.wav", music()),
        "album/mid.flac": write_audio(folder / "album" / "mid.flac", music(0.6, 5000), "PCM_24"),
        "album/deep/low.wav": write_audio(folder / "album" / "deep" / "low.wav",
                                          0.5 * music(0.4, 9000)),  # fmt: skip
    }


def test_bucket_in_bucket_out_equals_a_local_run_and_a_rerun_writes_nothing(tiny_model,
                                                                           tmp_path):  # fmt: skip
    tracks = library(tmp_path / "music")
    settings = ["--checkpoint", tiny_model, "--bit-depth", "float32"]
    local = stemsplit(tmp_path / "music", "-r", *settings, "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    with s3_server("songs", "stems") as env:
        for key, path in tracks.items():
            upload(path, "songs", key)
        args = ["s3://songs/", "-r", *settings, "-o", "s3://stems/sep", "--json"]
        first = stemsplit(*args, env=env)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        assert sorted(t["input"] for t in summary["tracks"]) == sorted(
            f"s3://songs/{key}" for key in tracks)
        assert {t["status"] for t in summary["tracks"]} == {"done"}
        figures = summary["throughput"]
        assert figures["tracks"] == 3 and figures["workers"] == figures["nodes"] == 1
        audio_hours = sum(t["audio_seconds"] for t in summary["tracks"]) / 3600
        assert abs(figures["audio_hours"] - audio_hours) < 1e-6
        assert figures["audio_hours_per_node_hour"] == pytest.approx(
            audio_hours / figures["wall_hours"], rel=1e-2)
        assert all(s.startswith("s3://stems/sep/") for t in summary["tracks"]
                   for s in t["stems"].values())  # fmt: skip
        written = versions("stems")
        got = download_all("stems", tmp_path / "bucket")

        rerun = stemsplit(*args, env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert {t["status"] for t in json.loads(rerun.stdout)["tracks"]} == {"skipped"}
        assert versions("stems") == written  # not one object written again

    expected = {p.relative_to(tmp_path / "local").as_posix(): p
                for p in (tmp_path / "local").rglob("*") if p.is_file()}  # fmt: skip
    assert sorted(got) == sorted(f"sep/{name}" for name in expected)
    assert sum(name.endswith(".wav") for name in expected) == 12
    for name, path in expected.items():
        if name.endswith(".wav"):
            assert np.abs(read(got[f"sep/{name}"]) - read(path)).max() <= 1e-6, name
        else:  # the record names the object it was made from
            record = json.loads(got[f"sep/{name}"].read_text())
            assert record["input"].startswith("s3://songs/")
            assert record["settings"] == json.loads(path.read_text())["settings"]


def test_an_empty_prefix_is_one_error_line(tmp_path):
    with s3_server("songs") as env:
        upload(write_audio(tmp_path / "a.wav", music(0.1)), "songs", "deep/a.wav")
        result = stemsplit("s3://songs/", "-o", tmp_path / "out", env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == ("error: no audio files found: s3://songs/: no audio "
                                     "objects under this prefix (add -r for sub-prefixes)")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["s3://songs/none.wav"])
def test_a_missing_object_fails_alone(tiny_model, tmp_path, missing):
    with s3_server("songs") as env:
        upload(write_audio(tmp_path / "a.wav", music(0.3)), "songs", "a.wav")
        result = stemsplit("s3://songs/a.wav", missing, "--checkpoint", tiny_model,
                           "-o", tmp_path / "out", "--json", env=env)  # fmt: skip
    assert result.returncode == 1
    statuses = {t["input"]: t["status"] for t in json.loads(result.stdout)["tracks"]}
    assert statuses == {"s3://songs/a.wav": "done", missing: "failed"}
    assert f"{missing}: no such object" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.wav")) == [
        "bass.wav", "drums.wav", "other.wav", "vocals.wav"]


def test_track_numbers_are_the_inputs_places_everywhere(tiny_model, tmp_path):
    """`{n}` (here through `--naming uvr`) numbers a track by its place in the whole input
    list: a bucket run and two shards write the names a local run writes."""
    tracks = library(tmp_path / "music")
    settings = ["--checkpoint", tiny_model, "--naming", "uvr", "-s", "vocals"]

    def names(folder: Path) -> list[str]:
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.wav"))

    local = stemsplit(tmp_path / "music", "-r", *settings, "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    expected = names(tmp_path / "local")
    assert sorted(name.rsplit("/", 1)[-1].split("_", 1)[0] for name in expected) == ["1", "2", "3"]
    for shard in ("0/2", "1/2"):
        result = stemsplit(tmp_path / "music", "-r", *settings, "--shard", shard,
                           "-o", tmp_path / "shards")  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert names(tmp_path / "shards") == expected
    with s3_server("songs", "stems") as env:
        for key, path in tracks.items():
            upload(path, "songs", key)
        result = stemsplit("s3://songs/", "-r", *settings, "-o", "s3://stems/sep", env=env)
        assert result.returncode == 0, result.stderr
        got = download_all("stems", tmp_path / "bucket")
    assert sorted(name.removeprefix("sep/") for name in got if name.endswith(".wav")) == expected
