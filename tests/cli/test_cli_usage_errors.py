"""Every bad option is one `error:` line and exit 2, before any work: nothing is
downloaded, decoded or written, and torch is not even imported (a 3-track batch, no
model cached, an unreachable zoo). Contradictory options are usage errors naming both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import label

PROBE = """
import sys
from stemsplit.cli import main
sys.argv = ["stemsplit", *{args!r}]
code = 0
try:
    main()
except SystemExit as exit:
    code = exit.code
print("RESULT=" + repr((code, "torch" in sys.modules)), file=sys.stdout)
"""


def _run(tmp_path: Path, *args: str) -> tuple[int, list[str], bool, float]:
    env = {**os.environ, "COLUMNS": "200", "STEMSPLIT_MODEL_DIR": str(tmp_path / "cache"),
           "STEMSPLIT_MIRROR": "http://127.0.0.1:9/nothing-here"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    seconds = time.perf_counter() - started
    code, torch_imported = eval(done.stdout.rsplit("RESULT=", 1)[1])  # our own repr, printed by the child
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return code, lines, torch_imported, seconds


@pytest.fixture
def three_tracks(tmp_path: Path) -> list[str]:
    import soundfile

    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.wav", "b.wav", "c.wav"):
        soundfile.write(tmp_path / name, 0.1 * rng.standard_normal((4410, 2)), 44100)
        paths.append(name)
    return paths


BAD = {
    "overlap": (["--overlap", "1.5"], "--overlap"),
    "precision": (["--precision", "fp8"], "precision"),
    "clip": (["--clip", "bogus"], "clip"),
    "segment": (["--segment", "-1"], "--segment"),
    "batch-size": (["--batch-size", "0"], "--batch-size"),
    "mp3-bitrate": (["-f", "mp3", "--mp3-bitrate", "999"], "mp3 bitrate"),
    "format": (["-f", "aac"], "output format"),
    "bit-depth": (["--bit-depth", "12"], "bit depth"),
    "filename-escapes": (["--filename", "../../x_{stem}.{ext}"], "leaves the output folder"),
    "filename-absolute": (["--filename", "/tmp/x_{stem}.{ext}"], "leaves the output folder"),
    "config-alone": (["--config", "x.yaml"], "--config"),
    "two-stems-and-stems": (["--two-stems", "vocals", "-s", "drums"], "--two-stems"),
    "configs-unpaired": (["--checkpoint", "a.th", "--checkpoint", "b.th", "--config", "c.yaml"],
                         "1 --config for 2 --checkpoint: cannot pair them, a.th, b.th"),
    "ensemble": (["-m", "htdemucs", "-m", "htdemucs_6s", "--ensemble", "loudest"],
                 "ensemble algorithm"),
    "jobs": (["-j", "-1"], "--jobs"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_option_is_one_line_exit_2_before_any_work(tmp_path, three_tracks, case):
    args, needle = BAD[case]
    code, lines, torch_imported, seconds = _run(tmp_path, *three_tracks, *args)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert needle in lines[0], lines
    assert not torch_imported
    assert not (tmp_path / "separated").exists() and not (tmp_path / "cache").exists()
    assert seconds < 5, seconds  # well under a second on a quiet machine; loose for CI load


def test_two_stems_and_stems_name_both_options(tmp_path, three_tracks):
    _, lines, _, _ = _run(tmp_path, *three_tracks, "--two-stems", "vocals", "-s", "drums")
    assert "--two-stems vocals" in lines[0] and "-s/--stems drums" in lines[0]


def test_a_demucs_package_with_a_yaml_is_refused_naming_both(tmp_path, three_tracks):
    pytest.importorskip("demucs")
    import zoo_checkpoints as zc
    from batch_cli import tiny_demucs_checkpoint

    package = tiny_demucs_checkpoint(tmp_path / "tiny.th")
    config = tmp_path / "roformer.yaml"
    config.write_text(zc.TINY_BS_YAML)
    code, lines, _, _ = _run(tmp_path, three_tracks[0], "--checkpoint", str(package),
                             "--config", str(config))  # fmt: skip
    assert code == 2, lines
    assert len(lines) == 1 and "tiny.th" in lines[0] and "roformer.yaml" in lines[0], lines
    assert not (tmp_path / "separated").exists()


def test_runner_built_once_for_a_three_track_batch(tmp_path, three_tracks):
    """Each network's runner (device, precision, warnings) is built once per run."""
    pytest.importorskip("demucs")
    from batch_cli import tiny_demucs_checkpoint

    from stemsplit import api
    from stemsplit.engine import runner

    package = tiny_demucs_checkpoint(tmp_path / "tiny.th")
    built = []
    original = runner.ModelRunner.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    runner.ModelRunner.__init__ = counting
    try:
        results = api.separate([tmp_path / t for t in three_tracks], checkpoint=package,
                               out=tmp_path / "out", jobs=0)  # fmt: skip
    finally:
        runner.ModelRunner.__init__ = original
    assert [r.status for r in results] == ["done"] * 3, [r.error for r in results]
    assert len(built) == 1
    record = json.loads((tmp_path / "out" / label(package) / "a" / "stemsplit.json").read_text())
    assert record["model_files"][0]["files"]["tiny.th"] == _sha256(package)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
