"""The batch machinery without a subprocess: inputs, decode-ahead, background writers,
stale temporaries, and `separate_many` (with the band-split test model: fast, exact)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from band_model import band_bundle
from batch_cli import music, read, write_audio

import stemsplit.api as api
from stemsplit.audio.writer import StemWriter
from stemsplit.batch.inputs import Track, expand_inputs
from stemsplit.batch.io import SPOOL_PREFIX, BackgroundWriter, Prefetcher, remove_stale
from stemsplit.engine.pipeline import prepare_input
from stemsplit.errors import InputError


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_expand_inputs_folders_globs_extensions_and_duplicates(tmp_path):
    for name in ("b.wav", "a.FLAC", "sub/c.mp3", "sub/deep/d.m4a", ".hidden.wav", "notes.txt",
                 "sub/cover.jpg"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert expand_inputs([tmp_path]) == [Track(tmp_path / "a.FLAC"), Track(tmp_path / "b.wav")]
    assert expand_inputs([tmp_path], recursive=True) == [
        Track(tmp_path / "a.FLAC"), Track(tmp_path / "b.wav"),
        Track(tmp_path / "sub" / "c.mp3", "sub/"),
        Track(tmp_path / "sub" / "deep" / "d.m4a", "sub/deep/"),
    ]  # fmt: skip
    # each track once, whichever way it was named
    twice = expand_inputs([tmp_path / "b.wav", str(tmp_path / "*.wav"), tmp_path])
    assert twice == [Track(tmp_path / "b.wav"), Track(tmp_path / "a.FLAC")]
    assert expand_inputs([str(tmp_path / "**" / "*.mp3")], recursive=True) == [
        Track(tmp_path / "sub" / "c.mp3")
    ]
    with pytest.raises(InputError):
        expand_inputs([tmp_path / "sub" / "deep" / "none-*.wav"])


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_background_writer_writes_what_stem_writer_writes(tmp_path, fmt):
    audio = music(0.5).T.copy()
    for name, factory in (("plain", StemWriter), ("background", BackgroundWriter)):
        writer = factory(tmp_path / f"{name}.{fmt}", 44100, 2, format=fmt)
        for start in range(0, audio.shape[1], 4096):
            block = audio[:, start:start + 4096].copy()
            writer.write(block)
            block[:] = 0  # the producer may reuse its arrays at once: the writer must copy
        writer.close()
    assert (tmp_path / f"plain.{fmt}").read_bytes() == (tmp_path / f"background.{fmt}").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"background.{fmt}", f"plain.{fmt}"]


def test_background_writer_error_reaches_the_caller_and_leaves_nothing(tmp_path):
    writer = BackgroundWriter(tmp_path / "stem.wav", 44100, 2)
    writer.write(np.zeros((2, 100), np.float32))
    writer.write(np.zeros((3, 100), np.float32))  # wrong shape: fails in the encoder thread
    with pytest.raises(ValueError, match="expected a"):
        for _ in range(50):
            writer.write(np.zeros((2, 100), np.float32))
        writer.close()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_removes_dead_processes_temporaries_only(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stem = tmp_path / "tiny" / "song" / "vocals.wav"
    stem.parent.mkdir(parents=True)
    stale = [stem.parent / f".vocals.wav.partial-{dead}{tail}" for tail in ("", ".f32")]
    live = stem.parent / f".vocals.wav.partial-{alive}"
    # a dead writer's record or report temporary in the track folder goes too
    other = stem.parent / f".report.html.partial-{dead}"
    elsewhere = tmp_path / "tiny" / f".other.wav.partial-{dead}"  # not our folder: left
    spool = tmp_path / f"{SPOOL_PREFIX}{dead}"
    spool.mkdir()
    (spool / ".stemsplit-spool-x.f32").write_bytes(b"1")
    for path in [*stale, live, other, elsewhere]:
        path.write_bytes(b"1")
    assert remove_stale([stem], tmp_path) == 4
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["tiny", "song", live.name, elsewhere.name]
    )


def test_prefetcher_decodes_ahead_and_close_deletes_what_was_not_taken(tmp_path):
    tracks = [write_audio(tmp_path / f"t{i}.wav", music(0.2, offset=i)) for i in range(4)]
    spool = tmp_path / "spool"
    with Prefetcher(lambda t: prepare_input(t, [44100], spool), tracks, workers=2) as ahead:
        first = ahead.get(0)
        np.testing.assert_array_equal(first.sources[44100].read(0, first.decoded_frames),
                                      read(tracks[0]).T)  # fmt: skip
        first.close()
        for future in list(ahead.futures.values()):
            future.result()
        assert len(list(spool.iterdir())) == 2  # tracks 1 and 2 decoded, not yet taken
    assert list(spool.iterdir()) == []


def test_separate_many_jobs_do_not_change_the_stems(tmp_path):
    for i, name in enumerate(("a", "b", "c")):
        write_audio(tmp_path / "in" / f"{name}.wav", music(1.0, offset=i * 3000))
    (tmp_path / "in" / "broken.flac").write_text("nope")
    runs = {}
    for jobs in (0, 2):
        out = tmp_path / f"out{jobs}"
        results = api.separate_many([tmp_path / "in"], model=band_bundle(), out=out,
                                    format="flac", jobs=jobs)  # fmt: skip
        assert [(r.input.name, r.status) for r in results] == [
            ("a.wav", "done"), ("b.wav", "done"), ("broken.flac", "failed"), ("c.wav", "done")
        ]
        assert results.report_index is None
        assert "broken.flac" in results[2].error
        runs[jobs] = {p.relative_to(out): sf.read(p)[0] for p in out.rglob("*.flac")}
        assert not [p for p in out.rglob(".*")], "no temporaries left"
    assert runs[0].keys() == runs[2].keys() and len(runs[0]) == 6
    for key, audio in runs[0].items():
        np.testing.assert_array_equal(runs[2][key], audio)
