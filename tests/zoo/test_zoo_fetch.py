"""Downloads against a live local HTTP server: verify, resume, retry, lock, offline."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from zoo_checkpoints import sha256

from stemsplit.errors import ChecksumMismatch, DownloadError
from stemsplit.zoo import fetch
from stemsplit.zoo.catalog import FileSpec, ModelCard

PAYLOAD = os.urandom(300_000)
FAST = {"retries": 2, "backoff": 0.01, "timeout": (2.0, 2.0)}


def _spec(server, name="model.th", body=PAYLOAD, **check) -> FileSpec:
    return FileSpec(name=name, url=server.add(name, body), **check)


def _no_leftovers(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert not (folder / f"{name}.part").exists()


@pytest.mark.parametrize(
    "check", ["sha256", "sha256_prefix", "none"], ids=["full-sha", "prefix", "unpublished"]
)
def test_download_verifies_and_caches(server, model_dir: Path, check: str) -> None:
    digest = sha256(PAYLOAD)
    options = {"sha256": digest, "sha256_prefix": digest[:8], "none": None}[check]
    spec = _spec(server, **({check: options} if options else {}))
    events = []
    path = fetch.ensure_file(spec, progress=events.append, **FAST)
    assert path == model_dir / "model.th"
    assert path.read_bytes() == PAYLOAD
    assert events[-1].done == events[-1].total == len(PAYLOAD)
    recorded = json.loads((model_dir / fetch.HASHES_FILE).read_text()) if check != "sha256" else {}
    if check == "sha256":
        assert not (model_dir / fetch.HASHES_FILE).exists()
    else:
        assert recorded["model.th"]["sha256"] == digest
    # cached: no second request
    assert fetch.ensure_file(spec, **FAST) == path
    assert len(server.requests_for("model.th")) == 1


@pytest.mark.parametrize("check", ["sha256", "sha256_prefix", "size"])
def test_corrupt_download_is_refused_and_not_cached(server, model_dir: Path, check: str) -> None:
    good = sha256(PAYLOAD)
    value = {"sha256": good, "sha256_prefix": good[:8], "size": len(PAYLOAD)}[check]
    corrupt = bytearray(PAYLOAD)
    corrupt[1000] ^= 0xFF
    if check == "size":
        corrupt += b"x"
    spec = _spec(server, body=bytes(corrupt), **{check: value})
    with pytest.raises(ChecksumMismatch, match="corrupt.*nothing was cached"):
        fetch.ensure_file(spec, **FAST)
    _no_leftovers(model_dir, "model.th")


def test_recorded_hash_guards_later_downloads(server, model_dir: Path) -> None:
    spec = _spec(server)
    path = fetch.ensure_file(spec, **FAST)
    path.unlink()
    server.add("model.th", PAYLOAD[::-1])  # changed upstream since the first download
    with pytest.raises(ChecksumMismatch, match="recorded at first download"):
        fetch.ensure_file(spec, **FAST)
    _no_leftovers(model_dir, "model.th")


def test_cut_download_resumes_with_range(server, model_dir: Path) -> None:
    spec = _spec(server, sha256=sha256(PAYLOAD))
    server.behave("model.th", cut_times=1)
    path = fetch.ensure_file(spec, **FAST)
    assert path.read_bytes() == PAYLOAD
    first, second = server.requests_for("model.th")
    assert first.range is None
    start = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= len(PAYLOAD) // 2  # resumed where the kept bytes end


def test_interrupted_run_resumes_in_the_next_run(server, model_dir: Path) -> None:
    spec = _spec(server, sha256=sha256(PAYLOAD))
    server.behave("model.th", cut_times=1)
    with pytest.raises(DownloadError, match="cannot download model.th"):
        fetch.ensure_file(spec, retries=0, timeout=(2.0, 2.0))
    kept = (model_dir / "model.th.part").stat().st_size
    assert 0 < kept <= len(PAYLOAD) // 2
    assert not (model_dir / "model.th").exists()
    assert fetch.ensure_file(spec, **FAST).read_bytes() == PAYLOAD
    assert server.requests_for("model.th")[-1].range == f"bytes={kept}-"


def test_server_errors_are_retried_then_reported(server, model_dir: Path) -> None:
    spec = _spec(server, sha256=sha256(PAYLOAD))
    server.behave("model.th", status=500, status_times=2)
    assert fetch.ensure_file(spec, **FAST).read_bytes() == PAYLOAD
    assert len(server.requests_for("model.th")) == 3

    missing = FileSpec(name="absent.th", url=server.url("absent.th"))
    with pytest.raises(DownloadError, match="HTTP 404.*absent.th"):
        fetch.ensure_file(missing, **FAST)
    assert len(server.requests_for("absent.th")) == 1  # 404 is not retried
    _no_leftovers(model_dir, "absent.th")


def test_mirrors_are_tried_in_order(server, model_dir: Path) -> None:
    server.add("mirror/model.th", PAYLOAD)
    spec = FileSpec(
        name="model.th",
        url=server.url("gone/model.th"),
        mirrors=(server.url("mirror/model.th"),),
        sha256=sha256(PAYLOAD),
    )
    assert fetch.ensure_file(spec, **FAST).read_bytes() == PAYLOAD


def test_hanging_server_times_out(server, model_dir: Path) -> None:
    spec = _spec(server)
    server.behave("model.th", hang_seconds=3.0, hang_times=5)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="cannot download"):
        fetch.ensure_file(spec, retries=1, backoff=0.01, timeout=(1.0, 0.5))
    assert time.monotonic() - start < 5
    _no_leftovers(model_dir, "model.th")


def test_mirror_environment_replaces_every_url(server, model_dir: Path, monkeypatch) -> None:
    server.add("base/model.th", PAYLOAD)
    monkeypatch.setenv("STEMSPLIT_MIRROR", server.url("base") + "/")
    spec = FileSpec(name="model.th", url="https://example.invalid/x/model.th")
    assert fetch.file_urls(spec) == [server.url("base/model.th")]
    assert fetch.ensure_file(spec, **FAST).read_bytes() == PAYLOAD


def test_offline_missing_model_fails_fast_and_clearly(model_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("STEMSPLIT_OFFLINE", "1")
    spec = FileSpec(name="model.th", url="http://127.0.0.1:9/model.th")
    card = ModelCard(
        name="tiny", architecture="demucs", sources=("a",), samplerate=1, files=(spec,)
    )
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch.ensure_files(card)
    assert time.monotonic() - start < 0.5
    message = str(info.value)
    assert "offline" in message and spec.url in message and str(model_dir / "model.th") in message
    # a cached file is used offline
    model_dir.mkdir(parents=True)
    (model_dir / "model.th").write_bytes(b"data")
    assert fetch.ensure_files(card) == [model_dir / "model.th"]


def _fetch_in_process(url: str, folder: str, digest: str, out: str) -> None:
    spec = FileSpec(name="model.th", url=url, sha256=digest)
    path = fetch.ensure_file(spec, model_dir=folder, retries=0, timeout=(5.0, 10.0))
    Path(out).write_text(sha256(path.read_bytes()))


def test_two_processes_download_once(server, model_dir: Path, tmp_path: Path) -> None:
    server.add("model.th", PAYLOAD)
    server.behave("model.th", chunk_delay=0.05)  # ~1.9 s: the two runs overlap
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{i}" for i in range(2)]
    workers = [
        context.Process(
            target=_fetch_in_process,
            args=(server.url("model.th"), str(model_dir), sha256(PAYLOAD), str(out)),
        )
        for out in outs
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert [out.read_text() for out in outs] == [sha256(PAYLOAD)] * 2
    assert len(server.requests_for("model.th")) == 1


def test_verify_and_remove_cached(server, model_dir: Path) -> None:
    spec = _spec(server, sha256_prefix=sha256(PAYLOAD)[:8])
    other = _spec(server, name="other.th", body=b"other bytes")
    card = ModelCard(
        name="tiny", architecture="demucs", sources=("a",), samplerate=1, files=(spec, other)
    )
    fetch.ensure_files(card, **FAST)
    assert [r.status for r in fetch.verify_cached([card])] == ["ok", "ok"]
    (model_dir / "other.th").write_bytes(b"tampered")
    assert [r.status for r in fetch.verify_cached([card])] == ["ok", "mismatch"]
    removed = fetch.remove_cached(card)
    assert sorted(p.name for p in removed) == ["model.th", "other.th"]
    assert [r.status for r in fetch.verify_cached([card])] == ["missing", "missing"]


def test_cache_dir_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STEMSPLIT_MODEL_DIR", str(tmp_path / "env"))
    assert fetch.cache_dir() == tmp_path / "env"
    assert fetch.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("STEMSPLIT_MODEL_DIR")
    assert fetch.cache_dir().name == "models" and "stemsplit" in str(fetch.cache_dir())
