"""Pipe tests: the real command fed through stdin, real music, tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from batch_cli import tiny_demucs_checkpoint
from carried import fixture
from pipe_music import real_music


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_demucs_checkpoint(tmp_path_factory.mktemp("pipe-model") / "tiny.th")


@pytest.fixture(scope="session")
def roformer() -> tuple[Path, Path]:
    folder = fixture("bs_roformer")
    return folder / "model.ckpt", folder / "config.yaml"


@pytest.fixture(scope="session")
def music() -> np.ndarray:
    return real_music(6.0, offset=3.0)
