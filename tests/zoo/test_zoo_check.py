"""Cards you can trust, through the real command against the live test server:
`stemsplit models check` (every location of every file), the fallback to a card's
mirror when its primary host is dead, the corrected SW card, `models --json info`,
what `info` says about implemented / downloaded / runnable, and the weights' licences
(`models --licence`, `--require-licence`, STEMSPLIT_REQUIRE_LICENCE)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
import zoo_checkpoints as zc
from cli_run import stemsplit

PAYLOAD = os.urandom(30_000)
HTDEMUCS_FILE = "955717e8-8726e21a.th"


def _dead_url(name: str) -> str:
    """A URL on a local port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _models(*args: str, env: dict[str, str]) -> object:
    return stemsplit("models", *args, env={"STEMSPLIT_TIMEOUT": "5", **env}, timeout=120)


def test_check_names_the_file_no_location_serves_then_passes_once_a_mirror_does(
    server, model_dir: Path
) -> None:
    env = {"STEMSPLIT_MODEL_DIR": str(model_dir), "STEMSPLIT_MIRROR": server.base_url}
    failed = _models("check", "htdemucs", env=env)
    assert failed.returncode == 1
    assert f"htdemucs: {HTDEMUCS_FILE}" in failed.stderr and "error:" in failed.stderr
    assert f"dead {server.url(HTDEMUCS_FILE)} (HTTP 404)" in failed.stdout
    (asked,) = server.requests_for(HTDEMUCS_FILE)
    assert asked.range == "bytes=0-0"  # one byte asked, nothing downloaded
    assert not model_dir.exists() or not any(model_dir.iterdir())

    server.add(HTDEMUCS_FILE, PAYLOAD)
    passed = _models("check", "htdemucs", "--json", env=env)
    assert passed.returncode == 0, passed.stderr
    (result,) = json.loads(passed.stdout)
    assert result["reachable"] is True and result["file"] == HTDEMUCS_FILE
    (location,) = result["locations"]
    assert location["status"] == "reachable" and location["size"] == len(PAYLOAD)


@pytest.fixture
def dead_primary(server, model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A card whose primary host refuses connections and whose mirror serves the file."""
    server.add("mirror/tiny.th", PAYLOAD)
    zoo = zc.write_zoo(tmp_path / "zoo.toml", {
        "tiny": {"architecture": "conv_tasnet", "sources": ["a", "b"], "samplerate": 8000,
                 "licence": "MIT", "licence_source": "the test",
                 "files": [{"name": "tiny.th", "url": _dead_url("tiny.th"),
                            "mirrors": [server.url("mirror/tiny.th")],
                            "sha256": zc.sha256(PAYLOAD), "size": len(PAYLOAD)}]},
        "wrong-size": {"architecture": "conv_tasnet", "sources": ["a", "b"],
                       "samplerate": 8000,
                       "files": [{"name": "other.th", "url": server.url("mirror/tiny.th"),
                                  "size": len(PAYLOAD) + 1}]},
    })  # fmt: skip
    return {"STEMSPLIT_MODEL_DIR": str(model_dir), "STEMSPLIT_ZOO": str(zoo)}


def test_check_reports_each_location(dead_primary: dict[str, str]) -> None:
    result = _models("--json", "check", "tiny", env=dead_primary)
    assert result.returncode == 0, result.stderr
    (tiny,) = json.loads(result.stdout)
    assert [loc["status"] for loc in tiny["locations"]] == ["dead", "reachable"]
    assert tiny["locations"][0]["detail"] == "connection refused"

    mismatch = _models("check", "wrong-size", env=dead_primary)
    assert mismatch.returncode == 1
    assert "size mismatch" in mismatch.stdout
    assert f"{len(PAYLOAD)} bytes, the card says {len(PAYLOAD) + 1}" in mismatch.stdout
    assert "wrong-size: other.th" in mismatch.stderr


def test_download_falls_back_to_the_mirror_when_the_primary_is_dead(
    dead_primary: dict[str, str], model_dir: Path, server
) -> None:
    result = _models("download", "tiny", env=dead_primary)
    assert result.returncode == 0, result.stderr
    assert (model_dir / "tiny.th").read_bytes() == PAYLOAD
    assert [r.range for r in server.requests_for("mirror/tiny.th")] == [None]


def test_sw_card_points_off_the_deleted_host() -> None:
    result = _models("--json", "info", "bs-roformer-sw", env={})
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    files = {spec["name"]: spec for spec in card["files"]}
    ckpt, yaml = files["BS-Rofo-SW-Fixed.ckpt"], files["BS-Rofo-SW-Fixed.yaml"]
    assert ckpt["sha256"] == "24e7d35ee9c64415673d3fd33e06a67cac2c103c5df6267ba1576459c775916e"
    assert ckpt["size"] == 699_412_152
    assert yaml["sha256"] == "f9fada9f94e5ba2d2e4600196299459294bc5f532b314c209cc156ac63e4329b"
    assert yaml["size"] == 4_613
    for spec in (ckpt, yaml):
        locations = [spec["url"], *spec["mirrors"]]
        assert not any("huggingface.co/jarredou/" in url for url in locations)
        assert "huggingface.co/FractalSurfer/BS-RoFormer-SW-6stem/" in spec["url"]
        assert len(spec["mirrors"]) == 2


def test_info_says_implemented_downloaded_and_runnable(model_dir: Path) -> None:
    env = {"STEMSPLIT_MODEL_DIR": str(model_dir)}
    text = _models("info", "htdemucs", env=env).stdout
    assert "installed:" not in text
    assert "implemented:    yes" in text
    assert "downloaded:     no (0 of 1 files" in text
    assert "runnable here:  yes, once its files are downloaded" in text
    data = json.loads(_models("info", "htdemucs", "--json", env=env).stdout)
    assert (data["implemented"], data["downloaded"], data["runnable"]) == (True, False, True)
    assert data["missing"] == []


def test_demucs_weights_are_not_called_mit() -> None:
    rows = json.loads(_models("--json", env={}).stdout)
    demucs = [r for r in rows if r.get("architecture") in ("demucs", "conv_tasnet")]
    assert {r["name"] for r in demucs} >= {"htdemucs", "htdemucs_ft", "tasnet"}
    for row in demucs:
        assert row["licence"] == "research-only", row["name"]
        assert "facebookresearch/demucs/issues/327" in row["licence_source"]
        assert row["code_licence"] == "MIT"
    cards = [r for r in rows if r.get("architecture") != "preset"]
    assert all(r["licence"] in ("research-only", "unknown") for r in cards)
    assert all(r["licence_source"] for r in cards)
    table = _models("--licence", env={}).stdout
    assert "research-only" in table and "issues/327" in table


def _song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    soundfile.write(path, np.zeros((4410, 2), dtype=np.float32), 44100)
    return path


def test_require_licence_refuses_before_any_download(server, model_dir: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    env = {"STEMSPLIT_MODEL_DIR": str(model_dir), "STEMSPLIT_MIRROR": server.base_url}
    song = _song(tmp_path)
    refused = stemsplit(song, "-m", "htdemucs", "--require-licence", "commercial",
                        "-o", tmp_path / "out", env=env)  # fmt: skip
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert "htdemucs" in line and "research-only" in line and "issues/327" in line
    by_env = stemsplit(song, "-m", "mdx23c-vocals", "-o", tmp_path / "out",
                       env={**env, "STEMSPLIT_REQUIRE_LICENCE": "open"})  # fmt: skip
    assert by_env.returncode == 1 and "unknown" in by_env.stderr and "issues/245" in by_env.stderr
    assert server.state.requests == []  # nothing was asked of any host
    assert not (tmp_path / "out").exists()

    bad = stemsplit(song, "--require-licence", "free", env=env)
    assert bad.returncode == 2 and "any, open, commercial" in bad.stderr


def test_a_licence_that_allows_the_use_goes_on(dead_primary: dict[str, str],
                                               tmp_path: Path) -> None:  # fmt: skip
    """An MIT card passes `commercial`: the run goes on to its (offline) download."""
    song = _song(tmp_path)
    result = stemsplit(song, "-m", "tiny", "--require-licence", "commercial", "-o",
                       tmp_path / "out", env={**dead_primary, "STEMSPLIT_OFFLINE": "1"})  # fmt: skip
    assert result.returncode == 1
    assert "--require-licence" not in result.stderr and "offline mode is on" in result.stderr


def test_models_json_applies_to_every_subcommand(model_dir: Path) -> None:
    env = {"STEMSPLIT_MODEL_DIR": str(model_dir)}
    for args in (("path",), ("verify",), ("rm", "htdemucs"), ("info", "htdemucs")):
        result = _models("--json", *args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        json.loads(result.stdout)  # JSON, not the text rendering


def test_info_says_what_a_missing_runtime_needs(model_dir: Path) -> None:
    """An install without onnxruntime (hidden from the import system): a UVR MDX-Net card
    is implemented but not runnable here, and says which extra installs it."""
    import subprocess
    import sys

    hide = (
        "import importlib.util as u, sys\n"
        "real = u.find_spec\n"
        "u.find_spec = lambda n, *a: None if n.split('.')[0] == 'onnxruntime' else real(n, *a)\n"
        "sys.argv = ['stemsplit', 'models', '--json', 'info', 'kim_inst']\n"
        "from stemsplit.cli import entry\n"
        "entry()\n"
    )
    result = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True,
                            env={**os.environ, "STEMSPLIT_MODEL_DIR": str(model_dir)},
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["implemented"] is True and data["runnable"] is False
    assert data["missing"] == ["onnxruntime"] and data["downloaded"] is False
