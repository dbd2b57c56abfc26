"""audio.reader on real files made in tmp_path and on the carried MUSDB clip."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr
from carried import MIXTURE, STEM_MP4

from stemsplit.audio.reader import downmix_matrix, probe, read_all, read_blocks
from stemsplit.errors import InputError, UndecodableAudio


def _tone(frames: int, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a different sine per channel plus a little noise."""
    t = np.arange(frames) / rate
    rng = np.random.default_rng(seed)
    cols = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]
    audio = np.stack(cols, axis=1) + 0.05 * rng.standard_normal((frames, channels))
    return audio.astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real files of each kind the reader must handle."""
    folder = tmp_path_factory.mktemp("reader")
    made = {}

    def write(name: str, audio: np.ndarray, rate: int, **kwargs: str) -> None:
        made[name] = folder / name
        sf.write(made[name], audio, rate, **kwargs)

    write("mono22k.wav", _tone(22050 * 2 + 17, 22050, 1)[:, 0], 22050, subtype="PCM_16")
    write("stereo48k.flac", _tone(48000 * 2 + 3, 48000, 2), 48000, subtype="PCM_24")
    write("stereo44k.mp3", _tone(44100 * 2, 44100, 2), 44100)
    write("six32k.wav", _tone(32000 + 5, 32000, 6), 32000, subtype="FLOAT")
    write("pcm24.wav", _tone(9000, 44100, 2), 44100, subtype="PCM_24")
    write("empty.wav", np.zeros((0, 2), np.float32), 44100, subtype="PCM_16")
    bad = _tone(5000, 44100, 2)
    bad[100, 0], bad[200, 1], bad[300, 0] = np.nan, np.inf, -np.inf
    write("nan.wav", bad, 44100, subtype="FLOAT")
    return made


def test_blocks_shape_dtype_and_content(files: dict[str, Path]) -> None:
    path = files["stereo48k.flac"]
    blocks = list(read_blocks(path, block_frames=4096))
    reference, _ = sf.read(path, dtype="float32", always_2d=True)
    assert all(b.shape == (2, 4096) for b in blocks[:-1])
    assert 0 < blocks[-1].shape[1] <= 4096
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), reference.T)


@pytest.mark.parametrize("name", ["mono22k.wav", "stereo48k.flac", "stereo44k.mp3", "six32k.wav"])
@pytest.mark.parametrize("block_frames", [1000, 2**16])
def test_exact_length_after_resampling(files: dict[str, Path], name: str, block_frames: int) -> None:
    info = sf.info(files[name])
    blocks = list(read_blocks(files[name], samplerate=44100, block_frames=block_frames))
    total = sum(b.shape[1] for b in blocks)
    assert total == round(info.frames * 44100 / info.samplerate)
    assert all(b.shape == (2, block_frames) for b in blocks[:-1])


@pytest.mark.parametrize("name", ["mono22k.wav", "stereo48k.flac"])
@pytest.mark.parametrize("target", [44100, 16000])
def test_streaming_resample_matches_one_shot(files: dict[str, Path], name: str, target: int) -> None:
    """soxr's stream, flushed with last=True, equals soxr.resample on the whole file."""
    audio, rate = sf.read(files[name], dtype="float32", always_2d=True)
    expected = soxr.resample(audio, rate, target, quality="HQ").T
    got = read_all(files[name], samplerate=target, channels=audio.shape[1])
    assert got.shape == expected.shape
    # Measured: bit-identical (0.0) at every block size tried; allow float noise only.
    assert np.abs(got - expected).max() <= 1e-6


def test_mono_is_duplicated_to_stereo(files: dict[str, Path]) -> None:
    mono, _ = sf.read(files["mono22k.wav"], dtype="float32")
    stereo = read_all(files["mono22k.wav"])
    assert stereo.shape == (2, len(mono))
    np.testing.assert_array_equal(stereo[0], mono)
    np.testing.assert_array_equal(stereo[1], mono)
    one = read_all(files["stereo48k.flac"], channels=1)
    two = read_all(files["stereo48k.flac"])
    np.testing.assert_allclose(one[0], two.mean(axis=0), atol=1e-6)


def test_six_channels_downmixed_with_warning(
    files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    six, _ = sf.read(files["six32k.wav"], dtype="float32")
    with caplog.at_level(logging.WARNING, logger="stemsplit.audio.reader"):
        stereo = read_all(files["six32k.wav"])
    assert any("6 channels" in r.getMessage() for r in caplog.records)
    centre = 0.5**0.5
    norm = 1 + 2 * centre
    left = (six[:, 0] + centre * six[:, 2] + centre * six[:, 4]) / norm  # LFE (3) dropped
    right = (six[:, 1] + centre * six[:, 2] + centre * six[:, 5]) / norm
    np.testing.assert_allclose(stereo, np.stack([left, right]), atol=1e-6)


def test_downmix_rows_sum_to_one() -> None:
    for channels in range(3, 10):
        matrix = downmix_matrix(channels, 2)
        assert matrix.shape == (2, channels)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_24_bit_and_probe(files: dict[str, Path]) -> None:
    ints, _ = sf.read(files["pcm24.wav"], dtype="int32")
    got = read_all(files["pcm24.wav"])
    np.testing.assert_array_equal(got, (ints >> 8).T / np.float32(2**23))
    info = probe(files["pcm24.wav"])
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, 9000)
    assert (info.container, info.codec, info.backend) == ("WAV", "PCM_24", "soundfile")
    assert info.duration == pytest.approx(9000 / 44100)


def test_nan_and_inf_become_zero(files: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    raw, _ = sf.read(files["nan.wav"], dtype="float32")
    with caplog.at_level(logging.WARNING, logger="stemsplit.audio.reader"):
        got = read_all(files["nan.wav"])
    assert any("NaN" in r.getMessage() for r in caplog.records)
    assert np.isfinite(got).all()
    assert got[0, 100] == 0 and got[1, 200] == 0 and got[0, 300] == 0
    clean = np.where(np.isfinite(raw), raw, 0).T
    np.testing.assert_array_equal(got, clean)


def test_mp3_and_empty_file(files: dict[str, Path]) -> None:
    audio = read_all(files["stereo44k.mp3"])
    assert audio.shape == (2, sf.info(files["stereo44k.mp3"]).frames)
    assert np.corrcoef(audio[0], _tone(44100 * 2, 44100, 2)[:, 0])[0, 1] > 0.95
    assert read_all(files["empty.wav"]).shape == (2, 0)


def test_m4a_through_pyav(tmp_path: Path) -> None:
    """An AAC .m4a (encoded here with FFmpeg's aac) is read through PyAV."""
    source = _tone(44100, 44100, 2)
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(source.T), "fltp", "stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    info = probe(path)
    assert info.backend == "pyav" and info.codec == "aac" and info.samplerate == 44100
    audio = read_all(path, samplerate=48000)
    assert audio.shape[0] == 2 and audio.dtype == np.float32
    assert audio.shape[1] >= round(44100 * 48000 / 44100)


def test_musdb_stem_mp4_stream0_is_the_mixture() -> None:
    mixture = read_all(MIXTURE)
    info = probe(STEM_MP4)
    assert info.backend == "pyav" and info.codec == "aac" and info.channels == 2
    assert info.frames is not None and abs(info.frames - mixture.shape[1]) < 2048
    decoded = read_all(STEM_MP4)
    assert decoded.shape == mixture.shape == (2, 132096)
    # mixture.flac is the same AAC stream decoded to 24-bit FLAC (measured max 2.4e-7).
    assert np.abs(decoded - mixture).max() <= 2**-21
    resampled = list(read_blocks(STEM_MP4, samplerate=48000, block_frames=50000))
    assert sum(b.shape[1] for b in resampled) == round(132096 * 48000 / 44100)
    assert all(b.shape == (2, 50000) for b in resampled[:-1])


def _truncate(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_blocks(tmp_path / "nope.wav")  # raises at call time, not at first next()
    assert not isinstance(caught.value, UndecodableAudio)
    assert "nope.wav" in str(caught.value)


def test_a_cut_mp3_decodes_as_far_as_it_goes(tmp_path: Path, files: dict[str, Path],
                                             caplog: pytest.LogCaptureFixture) -> None:
    """MP3 frames stand alone (like WAV samples): a cut file is read to its end, warned."""
    whole = read_all(files["stereo44k.mp3"])[0]
    mp3 = _truncate(files["stereo44k.mp3"], tmp_path / "cut.mp3", 0.4)
    with caplog.at_level("WARNING"):
        cut = read_all(mp3)[0]
    assert 0.3 * whole.shape[-1] < cut.shape[-1] < 0.5 * whole.shape[-1]
    assert "cut.mp3 ends after" in caplog.text


def test_bad_inputs_are_undecodable(tmp_path: Path, files: dict[str, Path]) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("these are not samples\n" * 20)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    flac = _truncate(files["stereo48k.flac"], tmp_path / "cut.flac", 0.5)
    header = tmp_path / "header.wav"  # cut inside the RIFF header
    header.write_bytes(files["pcm24.wav"].read_bytes()[:30])
    cases = [tmp_path, text, empty, flac, header, _truncate(STEM_MP4, tmp_path / "c.mp4", 0.3)]
    for path in cases:
        with pytest.raises(UndecodableAudio) as caught:
            read_all(path)
        message = str(caught.value)
        assert path.name in message and "\n" not in message, message
