"""docs/python.md runs: its Python blocks, in order, as one script (issue 30, item 10),
and the package shows its public API to `dir()` and `help()`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from batch_cli import music, write_audio

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_package_shows_its_api_without_importing_torch():
    probe = ("import pydoc, sys, stemsplit\n"
             "names = [n for n in dir(stemsplit) if not n.startswith('_')]\n"
             "page = pydoc.render_doc(stemsplit, renderer=pydoc.plaintext)\n"
             "print(names, 'torch' in sys.modules)\n"
             "print(all(f'{n}(' in page or f'class {n}' in page for n in "
             "('separate', 'separate_array', 'list_models', 'Separator')))\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    names, in_help = result.stdout.splitlines()
    for name in ("Separator", "separate", "separate_array", "list_models", "StemsplitError"):
        assert f"'{name}'" in names
    assert names.endswith("False"), "import stemsplit (and help) must not import torch"
    assert in_help == "True"
    import stemsplit

    assert set(stemsplit.__all__) <= set(dir(stemsplit))
    for name in stemsplit.__all__:
        assert getattr(stemsplit, name).__doc__ or name == "__version__", name


def test_docs_python_md_runs(tmp_path):
    """A tiny HTDemucs stands in for htdemucs (a card of the same name in STEMSPLIT_ZOO,
    its file already in an offline model folder)."""
    pytest.importorskip("demucs")
    import zoo_checkpoints as zc

    payload = zc.demucs_package_bytes(zc.demucs_model("HTDemucs"))
    models = tmp_path / "models"
    models.mkdir()
    zc.save_bytes(models / "tiny-htdemucs.th", payload)
    zoo = zc.write_zoo(tmp_path / "zoo.toml", {"htdemucs": {
        "architecture": "demucs", "sources": zc.SOURCES, "samplerate": 44100,
        "files": [{"name": "tiny-htdemucs.th", "url": "https://example.invalid/tiny-htdemucs.th",
                   "sha256": zc.sha256(payload)}]}})  # fmt: skip
    write_audio(tmp_path / "song.wav", music(0.5))
    blocks = _blocks()
    assert len(blocks) >= 6
    script = tmp_path / "python_md.py"
    script.write_text("\n".join(blocks))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
             "STEMSPLIT_ZOO": str(zoo), "STEMSPLIT_MODEL_DIR": str(models),
             "STEMSPLIT_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "separated" / "htdemucs" / "song" / "vocals.flac").is_file()
    assert (tmp_path / "stems" / "htdemucs" / "song" / "vocals.wav").is_file()
    assert "unknown stem(s) kazoo" in result.stdout
