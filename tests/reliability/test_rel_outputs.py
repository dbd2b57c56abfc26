"""Outputs that cannot be written: every case one clear line, exit 1, nothing left behind."""

from __future__ import annotations

import contextlib
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from cli_run import label
from rel_cli import assert_one_line_failure, leftovers, noise, stemsplit

RATE = 44100


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir()
    sf.write(path, noise(3.0), RATE, subtype="PCM_16")
    return path


@contextlib.contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at `folder` (root in a container allowing mounts), else a skip."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("where", ["under-a-file", pytest.param("proc", marks=pytest.mark.slow)])
def test_unwritable_folder(tmp_path: Path, song: Path, tiny_model: Path, where: str) -> None:
    """Root ignores chmod, so: a folder path under a regular file, and /proc."""
    out = song / "sub" if where == "under-a-file" else Path("/proc/stemsplit-test")
    result = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "-q")
    reason = "a file is in the way" if where == "under-a-file" else "cannot be created"
    assert_one_line_failure(result, 1, "song.wav", reason, "choose another --out")


@pytest.mark.slow  # the default run stays under a minute
def test_read_only_file_system(tmp_path: Path, song: Path, tiny_model: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        result = stemsplit(song, "--checkpoint", tiny_model, "-o", folder / "sep", "-q")
    assert_one_line_failure(result, 1, "read-only file system", "choose another --out")


@pytest.mark.slow  # the default run stays under a minute
def test_disk_full_tmpfs(tmp_path: Path, song: Path, tiny_model: Path) -> None:
    """A 1.5 MB tmpfs: the 1 MB spool fits, the 4 stems (2 MB) do not -> ENOSPC."""
    with tmpfs(tmp_path / "small", "size=1536k") as folder:
        result = stemsplit(song, "--checkpoint", tiny_model, "-o", folder, "-q")
        assert_one_line_failure(result, 1, "song/", "no space left", "free some space")
        assert not leftovers(folder)
        assert not list(folder.rglob("*.wav"))


def _limit_file_size() -> None:  # in the child: files beyond 1.5 MB fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, resource.RLIM_INFINITY))


@pytest.mark.slow  # the default run stays under a minute
def test_disk_full_file_size_limit(tmp_path: Path, song: Path, tiny_model: Path) -> None:
    """Portable stand-in for a full disk: RLIMIT_FSIZE (Python ignores SIGXFSZ, so the
    write fails with EFBIG). float32 stems at 96 kHz outgrow the limit; the spool not."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "stemsplit", str(song), "--checkpoint", str(tiny_model),
         "-o", str(out), "-q", "--bit-depth", "float32", "--samplerate", "96000"],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert_one_line_failure(result, 1, "cannot write", "file too large", "ulimit -f")
    assert not list(out.rglob("*.wav"))


def test_output_equal_to_input_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    """`-o OUT --filename {stem}.{ext}` on OUT/tiny/vocals.wav would overwrite it."""
    song = tmp_path / label(tiny_model) / "vocals.wav"
    song.parent.mkdir()
    sf.write(song, noise(1.0), RATE)
    before = song.read_bytes()
    result = stemsplit(song, "--checkpoint", tiny_model, "-o", tmp_path,
                       "--filename", "{stem}.{ext}", "-q")  # fmt: skip
    assert_one_line_failure(result, 2, "would overwrite the input")
    assert song.read_bytes() == before


def test_folder_in_the_way_of_a_stem(tmp_path: Path, song: Path, tiny_model: Path) -> None:
    out = tmp_path / "out"
    (out / label(tiny_model) / "song" / "vocals.wav").mkdir(parents=True)
    result = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "-q")
    assert_one_line_failure(result, 1, "vocals.wav", "is a folder")
    assert not (out / label(tiny_model) / "song" / "drums.wav").exists()  # no half-written track


@pytest.mark.slow  # the default run stays under a minute
def test_existing_stems_are_skipped_then_overwritten(tmp_path: Path, song: Path,
                                                     tiny_model: Path) -> None:  # fmt: skip
    """A finished track is skipped (resume); stems with no record of how they were made
    are redone, saying why; --overwrite redoes a finished one, replacing atomically."""
    out = tmp_path / "out"
    folder = out / label(tiny_model) / "song"
    folder.mkdir(parents=True)
    for stem in ("drums", "bass", "other", "vocals"):
        (folder / f"{stem}.wav").write_bytes(b"placeholder")
    unknown = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "--json")
    assert unknown.returncode == 0 and '"done": 1' in unknown.stdout
    assert "redo song.wav: no stemsplit.json says how its stems were made" in (
        " ".join(unknown.stderr.split()))
    assert sf.info(folder / "vocals.wav").frames == 3 * RATE
    stamp = (folder / "vocals.wav").stat().st_mtime_ns
    skipped = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "--json")
    assert skipped.returncode == 0 and '"skipped": 1' in skipped.stdout
    assert (folder / "vocals.wav").stat().st_mtime_ns == stamp
    redone = stemsplit(song, "--checkpoint", tiny_model, "-o", out, "--overwrite", "-q")
    assert redone.returncode == 0, redone.stderr
    assert (folder / "vocals.wav").stat().st_mtime_ns != stamp
    assert sf.info(folder / "vocals.wav").frames == 3 * RATE
