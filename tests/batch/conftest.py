"""Batch set-up: a tiny Demucs checkpoint written by the `demucs` package itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from batch_cli import tiny_demucs_checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demucs_checkpoint(tmp_path_factory.mktemp("batch-model") / "tiny.th")
