"""Model tests' fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared_or_none(request: pytest.FixtureRequest) -> Path | None:
    """../shared when it is there, else None (held-out fixtures still run)."""
    try:
        return request.getfixturevalue("shared_dir")  # type: ignore[no-any-return]
    except pytest.skip.Exception:
        return None
