"""Inputs read through a stream (`audio.remote.RemoteFile`: an object in a bucket) decode
to the samples, length and tags of the same bytes read as a local file."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from stemsplit.audio.reader import probe, read_all, read_blocks
from stemsplit.audio.remote import RemoteFile
from stemsplit.audio.tags import read_tags
from stemsplit.errors import InputError, UndecodableAudio


class InMemory:
    """A remote input over bytes; counts the streams it opened and their largest read."""

    def __init__(self, name: str, data: bytes | None, fail_after: int | None = None) -> None:
        self.name, self.data, self.opened, self.fail_after = name, data, 0, fail_after

    def __str__(self) -> str:
        return f"mem://bucket/{self.name}"

    def _bytes(self) -> bytes:
        if self.data is None:
            raise InputError(f"{self}: no such object; check the URL")
        return self.data

    def size(self) -> int:
        return len(self._bytes())

    def open_stream(self) -> io.BytesIO:
        self.opened += 1
        if self.fail_after is None:
            return io.BytesIO(self._bytes())
        return _Dropping(self._bytes(), self.fail_after)


class _Dropping(io.BytesIO):
    """A connection that drops once `fail_after` bytes are read."""

    def __init__(self, data: bytes, fail_after: int) -> None:
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, size: int | None = -1) -> bytes:
        left = self.fail_after - self.tell()
        if left <= 0:
            raise OSError("connection reset by peer")
        return super().read(left if size is None or size < 0 else min(size, left))


def music(seconds: float = 1.3) -> np.ndarray:
    t = np.arange(int(44100 * seconds)) / 44100
    return np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 331 * t)], 1) * 0.4


def write_m4a(path: Path, audio: np.ndarray) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T, np.float32), "fltp",
                                           "stereo")  # fmt: skip
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    audio = music()
    wav, flac = tmp_path / "a.wav", tmp_path / "b.flac"
    soundfile.write(str(wav), audio, 44100, subtype="PCM_16")
    soundfile.write(str(flac), audio, 44100, subtype="PCM_24")
    mp3 = tmp_path / "d.mp3"
    soundfile.write(str(mp3), audio, 44100, format="MP3")
    return {"wav": wav, "flac": flac, "m4a": write_m4a(tmp_path / "c.m4a", audio), "mp3": mp3}


@pytest.mark.parametrize("kind", ["wav", "flac", "m4a"])
def test_a_stream_decodes_as_its_file(files: dict[str, Path], kind: str) -> None:
    path = files[kind]
    remote = InMemory(path.name, path.read_bytes())
    assert isinstance(remote, RemoteFile)
    local_info, remote_info = probe(path), probe(remote)
    assert remote_info.path is remote
    assert (remote_info.samplerate, remote_info.channels, remote_info.frames, remote_info.backend
            ) == (local_info.samplerate, local_info.channels, local_info.frames,
                  local_info.backend)  # fmt: skip
    for rate in (None, 48000):
        expected = read_all(path, samplerate=rate)
        got = read_all(remote, samplerate=rate)
        assert got.shape == expected.shape and np.array_equal(got, expected)
    assert remote.opened >= 2  # probed and decoded from its own streams


def test_tags_come_from_the_stream(tmp_path: Path) -> None:
    flac = tmp_path / "t.flac"
    soundfile.write(str(flac), music(0.2), 44100)
    from mutagen.flac import FLAC

    tagged = FLAC(str(flac))
    tagged["title"], tagged["artist"] = "Song", "Band"
    tagged.save()
    tags = read_tags(InMemory("t.flac", flac.read_bytes()))
    assert tags.text["title"] == ("Song",) and tags.text["artist"] == ("Band",)


def test_a_missing_or_empty_object_is_one_clear_error() -> None:
    with pytest.raises(InputError, match=r"^mem://bucket/x.wav: no such object"):
        list(read_blocks(InMemory("x.wav", None)))
    with pytest.raises(UndecodableAudio, match=r"^mem://bucket/x.wav is empty \(0 bytes\)"):
        probe(InMemory("x.wav", b""))
    with pytest.raises(UndecodableAudio, match=r"^cannot decode mem://bucket/x.wav"):
        probe(InMemory("x.wav", b"not audio at all" * 100))


def test_a_cut_wav_object_is_read_as_far_as_it_goes_with_a_warning(files: dict[str, Path],
                                                                   caplog) -> None:  # fmt: skip
    data = files["wav"].read_bytes()
    cut = data[: len(data) // 2]
    local = files["wav"].with_name("cut.wav")
    local.write_bytes(cut)
    with caplog.at_level("WARNING", logger="stemsplit.audio.reader"):
        got = read_all(InMemory("cut.wav", cut))
    assert np.array_equal(got, read_all(local))
    assert "mem://bucket/cut.wav: the header promises 1.3 s but the file holds 0.6 s" in caplog.text


@pytest.mark.parametrize("kind", ["wav", "flac", "m4a", "mp3"])
def test_a_read_that_fails_midway_is_one_error_not_a_short_track(files: dict[str, Path], kind,
                                                                 capfd) -> None:  # fmt: skip
    """libsndfile takes a failed read for the end of the file (a short WAV or MP3 would
    be separated as far as it goes): the failure is raised instead, with no traceback."""
    data = files[kind].read_bytes()
    remote = InMemory(files[kind].name, data, fail_after=min(len(data) // 2, 8192))
    with pytest.raises(InputError, match=rf"^mem://bucket/{files[kind].name}: reading the "
                       r"object failed \(connection reset by peer\); rerun to retry$"):
        read_all(remote)
    assert "Traceback" not in capfd.readouterr().err
