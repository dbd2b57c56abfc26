"""Fixtures for the zoo tests: an isolated cache and environment, a live HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import ZOO_ENV
from zoo_server import ZooServer


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder set as STEMSPLIT_MODEL_DIR; the other zoo variables unset."""
    for name in ZOO_ENV:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "cache"
    monkeypatch.setenv("STEMSPLIT_MODEL_DIR", str(folder))
    return folder


@pytest.fixture
def server() -> Iterator[ZooServer]:
    """A running ZooServer on 127.0.0.1 (stopped after the test)."""
    with ZooServer() as running:
        yield running
