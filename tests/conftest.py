"""Shared test set-up: make tests/ helpers importable and locate ../shared."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"

for folder in [TESTS, *[p for p in TESTS.iterdir() if p.is_dir()]]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (parity fixtures, real music); skip when absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (it exists only beside the dev/CI checkout)")
    return SHARED
