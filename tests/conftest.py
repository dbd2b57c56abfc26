"""Shared test set-up: make tests/ helpers importable.

Every fixture the tests read is carried in tests/fixtures (see carried.py); the larger
ones beside the dev checkout (../shared) are an optional extra: STEMSPLIT_FIXTURES."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for folder in [TESTS, *[p for p in TESTS.iterdir() if p.is_dir()]]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

