"""The MSST parity fixtures: shared ones in ../shared/fixtures, held-out ones in
tests/data/msst (written by tools/msst_fixtures*.py from MSST's own code)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

DATA = Path(__file__).resolve().parents[1] / "data" / "msst"


def held_out(model_types: Iterable[str]) -> list[str]:
    """The held-out fixtures of these MSST model types, by folder name."""
    types = set(model_types)
    return sorted(p.name for p in DATA.glob("*") if (p / "meta.json").is_file()
                  and read_meta(p)["model_type"] in types)  # fmt: skip


def fixture_folder(shared: Path | None, name: str, shared_names: Iterable[str]) -> Path:
    """A fixture's folder; skips (saying why) when it is absent."""
    if name in set(shared_names):
        if shared is None:
            pytest.skip("../shared is absent")
        folder = shared / "fixtures" / name
    else:
        folder = DATA / name
    if not folder.is_dir():
        pytest.skip(f"fixture {folder} is absent")
    return folder


def read_audio(path: Path) -> np.ndarray:
    """`(channels, frames)` float32."""
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0].T


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "meta.json").read_text())  # type: ignore[no-any-return]
