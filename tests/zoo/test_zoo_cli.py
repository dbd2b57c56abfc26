"""`stemsplit models ...` through the real command, against the live test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zoo_checkpoints as zc

PAYLOAD = os.urandom(50_000)


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stemsplit", "models", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **env},
    )


@pytest.fixture
def env(server, model_dir: Path, tmp_path: Path) -> dict[str, str]:
    server.add("tiny.th", PAYLOAD)
    cards = zc.write_zoo(tmp_path / "zoo.toml", {
        "tiny": {"architecture": "conv_tasnet", "sources": ["a", "b"], "samplerate": 8000,
                 "description": "test card", "quality": {"sdr": {"average": 1.5}},
                 "files": [{"url": "https://example.invalid/tiny.th",
                            "sha256": zc.sha256(PAYLOAD), "size": len(PAYLOAD)}]},
    })  # fmt: skip
    return {
        "STEMSPLIT_MODEL_DIR": str(model_dir),
        "STEMSPLIT_ZOO": str(cards),
        "STEMSPLIT_MIRROR": server.base_url,
    }


def test_list_download_verify_rm(env: dict[str, str], model_dir: Path, server) -> None:
    listed = json.loads(_run("--json", env=env).stdout)
    rows = {row["name"]: row for row in listed}
    assert {"htdemucs", "htdemucs_ft", "mel-roformer-kj", "tasnet", "tiny"} <= set(rows)
    assert rows["tiny"]["downloaded"] is False and rows["tiny"]["implemented"] is True
    assert rows["tiny"]["size"] == len(PAYLOAD) and rows["tiny"]["sdr"] == {"average": 1.5}

    done = _run("download", "tiny", env=env)
    assert done.returncode == 0, done.stderr
    assert (model_dir / "tiny.th").read_bytes() == PAYLOAD
    table = _run(env=env).stdout
    assert "tiny" in table and "Conv-TasNet" in table and "1.50" in table

    info = json.loads(_run("info", "tiny", "--json", env=env).stdout)
    assert info["cache"][0]["downloaded"] is True and info["sources"] == ["a", "b"]

    verified = json.loads(_run("verify", "--json", env=env).stdout)
    assert [(r["model"], r["status"]) for r in verified] == [("tiny", "ok")]
    (model_dir / "tiny.th").write_bytes(PAYLOAD[::-1])
    bad = _run("verify", env=env)
    assert bad.returncode == 1 and "do not match" in bad.stderr

    removed = json.loads(_run("rm", "tiny", "--json", env=env).stdout)
    assert removed == {"removed": [str(model_dir / "tiny.th")]}
    assert json.loads(_run("path", "--json", env=env).stdout) == {"model_dir": str(model_dir)}
    assert len(server.requests_for("tiny.th")) == 1


def test_errors_are_one_line(env: dict[str, str], model_dir: Path) -> None:
    unknown = _run("info", "htdemucs_fx", env=env)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().count("\n") == 0 and "did you mean htdemucs_ft" in unknown.stderr

    offline = _run("download", "tiny", "--offline", env=env)
    assert offline.returncode == 1
    assert "https://example.invalid/tiny.th" not in offline.stderr  # the mirror URL is named
    assert "offline" in offline.stderr and "tiny.th" in offline.stderr
    assert not (model_dir / "tiny.th").exists()

    other_dir = model_dir.parent / "elsewhere"
    done = _run("download", "tiny", "--json", "--model-dir", str(other_dir), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"name": "tiny", "files": [str(other_dir / "tiny.th")]}]
