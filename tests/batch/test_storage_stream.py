"""Inputs in a bucket are decoded straight from the object (issue 33: no local copy of
an hour-long file), through the real command on a moto S3 server.

The command's TMPDIR (where its scratch and staging folders live) is a folder watched
while the run goes: no file in it may ever begin with an input object's first 4 KiB
(a copy, whole or in progress, under any name). The stems must equal those of the same
bytes read from local files, and each record must name its object.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from batch_cli import music, read, stemsplit, write_audio
from moto_s3 import download_all, s3_server, upload

HEAD = 4096


def write_m4a(path: Path, audio: np.ndarray) -> Path:
    """An AAC .m4a (FFmpeg's encoder): decoded by PyAV, where WAV/FLAC go to libsndfile."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), "fltp", "stereo")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@dataclass
class Seen:
    files: set[str] = field(default_factory=set)  # every file name the watch met
    copies: set[str] = field(default_factory=set)  # those that began as an input does
    peak_bytes: int = 0


@contextlib.contextmanager
def watching(folder: Path, heads: list[bytes]) -> Iterator[Seen]:
    """Look at every file under `folder` every 20 ms until the block ends (a copy of an
    input lived as long as its track ran)."""
    seen = Seen()
    done = threading.Event()

    def look() -> None:
        total = 0
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                seen.files.add(name)
                try:
                    with open(path, "rb") as handle:
                        head = handle.read(HEAD)
                        total += os.fstat(handle.fileno()).st_size
                except OSError:  # gone meanwhile
                    continue
                if head in heads:
                    seen.copies.add(path)
        seen.peak_bytes = max(seen.peak_bytes, total)

    def watch() -> None:
        while not done.wait(0.02):
            look()

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def inputs(folder: Path, seconds: float) -> dict[str, Path]:
    """A WAV, a 24-bit FLAC (titled "Song") and an AAC .m4a of real music, by key."""
    from mutagen.flac import FLAC

    folder.mkdir(parents=True, exist_ok=True)
    flac = write_audio(folder / "b.flac", music(seconds, 7000), "PCM_24")
    tagged = FLAC(str(flac))
    tagged["title"] = "Song"
    tagged.save()
    return {
        "a.wav": write_audio(folder / "a.wav", music(seconds)),
        "b.flac": flac,
        "c.m4a": write_m4a(folder / "c.m4a", music(seconds, 20000)),
    }


def separate_from_the_bucket(model: Path, tmp_path: Path, seconds: float,
                             local_run: bool) -> tuple[dict[str, Path], Seen, dict[str, Path]]:  # fmt: skip
    """Objects (and, unless `local_run`, local copies of them in the same run) to a
    bucket, watched; the bucket's files by key, what the watch saw, the objects' files."""
    objects = inputs(tmp_path / "objects", seconds)
    here = tmp_path / "here"
    here.mkdir()
    for key, path in objects.items():  # the same bytes, as local files
        (here / f"local-{key}").write_bytes(path.read_bytes())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    heads = [path.read_bytes()[:HEAD] for path in objects.values()]
    assert all(len(head) == HEAD for head in heads)
    settings = ["--checkpoint", model, "--bit-depth", "float32"]
    with s3_server("songs", "stems") as env:
        for key, path in objects.items():
            upload(path, "songs", key)
        locals_in_run = [] if local_run else [here]
        with watching(scratch, heads) as seen:
            result = stemsplit("s3://songs/", *locals_in_run, *settings, "-o", "s3://stems/sep",
                               "--json", env={**env, "TMPDIR": str(scratch)})  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert {t["status"] for t in json.loads(result.stdout)["tracks"]} == {"done"}
        got = download_all("stems", tmp_path / "bucket")
    if local_run:  # the reference: the local files in a run of their own
        result = stemsplit(here, *settings, "-o", tmp_path / "local")
        assert result.returncode == 0, result.stderr
        got.update({f"sep/{p.relative_to(tmp_path / 'local').as_posix()}": p
                    for p in (tmp_path / "local").rglob("*.wav")})  # fmt: skip
    assert not list(scratch.iterdir())  # the run cleaned up after itself
    return got, seen, objects


def check(got: dict[str, Path], seen: Seen, objects: dict[str, Path]) -> None:
    assert not seen.copies, f"an input object was copied to local disk: {seen.copies}"
    # the watch saw the run's own files (stems staged before upload, decode spools)
    assert any(name.endswith(".wav") for name in seen.files), seen.files
    for key in objects:
        name = Path(key).stem
        stems = sorted(k for k in got if f"/{name}/" in k and k.endswith(".wav"))
        assert len(stems) == 4, (key, sorted(got))
        for stem in stems:
            local = stem.replace(f"/{name}/", f"/local-{name}/")
            difference = np.abs(read(got[stem]) - read(got[local])).max()
            assert difference <= 1e-6, (stem, difference)
        record = next(k for k in got if f"/{name}/" in k and k.endswith(".json"))
        assert json.loads(got[record].read_text())["input"] == f"s3://songs/{key}"
    import mutagen

    vocals = next(k for k in got if k.endswith("/b/vocals.wav"))  # tags read from the stream
    assert mutagen.File(str(got[vocals]))["TIT2"].text == ["Song (Vocals)"]


def test_objects_decode_from_their_streams_as_local_files_do(tiny_model, tmp_path):
    """WAV and FLAC (libsndfile) and AAC (PyAV) objects beside local files of the same
    bytes, in one run: never copied to local disk, stems equal to the local ones."""
    check(*separate_from_the_bucket(tiny_model, tmp_path, 1.0, local_run=False))


@pytest.mark.slow
def test_longer_objects_equal_a_local_run_and_are_never_copied(tiny_model, tmp_path):
    """Two-minute objects against a local run of their own."""
    check(*separate_from_the_bucket(tiny_model, tmp_path, 120, local_run=True))


def test_a_dry_run_reads_each_objects_length(tiny_model, tmp_path):
    """`--dry-run` probes each object through its stream (it used to call every object
    missing: "fails: s3:/songs/a.wav: no such file")."""
    objects = inputs(tmp_path / "objects", 2.0)
    with s3_server("songs") as env:
        for key, path in objects.items():
            upload(path, "songs", key)
        result = stemsplit("s3://songs/", "--checkpoint", tiny_model, "-o", tmp_path / "out",
                           "--dry-run", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for key in objects:
        assert f"separate s3://songs/{key} (0:02): not separated yet" in result.stdout
    assert not (tmp_path / "out").exists()
