"""Reliability matrix set-up: the real command, a tiny model, and the no-leftovers bar.

Every test here runs `python -m stemsplit ...` in a subprocess (the CLI is what users
meet), with a tiny HDemucs checkpoint written by the `demucs` package itself. The
autouse `no_leftovers` fixture fails any test that leaves a writer's temporary file
(`.*.partial-*`) or a spool file under its tmp_path (outputs and the
model cache both live there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_cli import leftovers


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    yield
    found = leftovers(tmp_path)
    assert not found, f"temporary files left behind: {[str(p) for p in found]}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HDemucs (track mean/std normalisation, like the real ones), demucs' format.

    Depth 4 / nfft 1024 so the hybrid branches meet; segment 2 s keeps runs short.
    """
    pytest.importorskip("demucs")
    import torch
    import zoo_checkpoints as zc
    from demucs.hdemucs import HDemucs

    torch.manual_seed(0)
    model = HDemucs(sources=zc.SOURCES, channels=4, depth=4, nfft=1024, dconv_comp=2,
                    segment=2)  # fmt: skip
    path = tmp_path_factory.mktemp("model") / "tiny.th"
    return zc.save_bytes(path, zc.demucs_package_bytes(model))
