"""audio.writer: every format round-trips through soundfile; clip policies; atomic writes."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from stemsplit.audio.writer import PARTIAL_GLOB, StemWriter, mp3_compression_level
from stemsplit.errors import OutputError, UsageError

RATE = 44100


def _signal(frames: int = 30001, peak: float = 0.9, seed: int = 1) -> np.ndarray:
    """(2, frames) float32: tones plus noise, scaled to `peak`."""
    t = np.arange(frames) / RATE
    rng = np.random.default_rng(seed)
    audio = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t + 1)])
    audio = audio + 0.1 * rng.standard_normal(audio.shape)
    return (audio * peak / np.abs(audio).max()).astype(np.float32)


def _write(path: Path, audio: np.ndarray, block: int = 7000, **options: object) -> StemWriter:
    with StemWriter(path, RATE, audio.shape[0], **options) as writer:
        for start in range(0, audio.shape[1], block):
            writer.write(audio[:, start : start + block])
    return writer


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(PARTIAL_GLOB))


@pytest.mark.parametrize(
    ("fmt", "bit_depth", "container", "subtype", "tolerance"),
    [
        ("wav", None, "WAV", "PCM_16", 0.5 / 2**15 + 1e-9),
        ("wav", 24, "WAV", "PCM_24", 0.5 / 2**23 + 1e-9),
        ("wav", "float32", "WAV", "FLOAT", 0.0),
        ("flac", "16", "FLAC", "PCM_16", 0.5 / 2**15 + 1e-9),
        ("flac", 24, "FLAC", "PCM_24", 0.5 / 2**23 + 1e-9),
    ],
)
def test_lossless_round_trip(
    tmp_path: Path, fmt: str, bit_depth: object, container: str, subtype: str, tolerance: float
) -> None:
    audio = _signal()
    path = tmp_path / "deep" / "er" / f"vocals.{fmt}"  # parent folders are created
    writer = _write(path, audio, format=fmt, bit_depth=bit_depth)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container, subtype, RATE, 2)
    back, _ = sf.read(path, dtype="float64", always_2d=True)
    assert back.shape == (audio.shape[1], 2)
    assert np.abs(back.T - audio).max() <= tolerance
    assert writer.clipped_samples == 0 and writer.frames_written == audio.shape[1]
    assert _leftovers(path.parent) == []


@pytest.mark.parametrize(("fmt", "container", "subtype"), [
    ("mp3", "MP3", "MPEG_LAYER_III"), ("ogg", "OGG", "VORBIS"), ("opus", "OGG", "OPUS")])
def test_lossy_round_trip(tmp_path: Path, fmt: str, container: str, subtype: str) -> None:
    audio = _signal(frames=RATE)
    path = tmp_path / f"drums.{fmt}"
    _write(path, audio, format=fmt)
    info = sf.info(path)
    rate = 48000 if fmt == "opus" else RATE  # libopus: the writer resamples to 48 kHz
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container, subtype, rate, 2)
    back, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = audio if rate == RATE else soxr.resample(audio.T, RATE, rate).T
    assert back.shape == (expected.shape[1], 2) == (round(RATE * rate / RATE), 2)
    middle = slice(2000, -2000)
    for channel in range(2):
        assert np.corrcoef(back[middle, channel], expected[channel, middle])[0, 1] > 0.97


@pytest.mark.parametrize("kbps", [32, 64, 96, 128, 160, 192, 224, 256, 320])
def test_mp3_bitrate_maps_onto_libsndfile(kbps: int) -> None:
    """libsndfile 1.2.2 CBR: bitrate = int(320 - level * 288) at >= 32 kHz."""
    level = mp3_compression_level(kbps, 44100)
    assert 0.0 <= level <= 1.0 and int(320 - level * (320 - 32)) == kbps
    low = mp3_compression_level(kbps, 22050)  # MPEG-2: [8, 160] kbps
    assert int(160 - low * (160 - 8)) == min(kbps, 160)


@pytest.mark.parametrize("kbps", [128, 320])
def test_mp3_file_has_the_bitrate(tmp_path: Path, kbps: int) -> None:
    audio = _signal(frames=RATE * 2)
    path = tmp_path / "bass.mp3"
    _write(path, audio, format="mp3", mp3_bitrate=kbps)
    measured = path.stat().st_size * 8 / 2.0 / 1000
    assert measured == pytest.approx(kbps, rel=0.1)


def test_clamp_counts_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = _signal(peak=0.5)
    audio[0, 10:15] = 1.5
    audio[1, 20:23] = -1.2
    with caplog.at_level(logging.WARNING, logger="stemsplit.audio.writer"):
        writer = _write(tmp_path / "a.wav", audio)
    assert writer.clipped_samples == 8
    assert any("8 samples clipped" in r.getMessage() for r in caplog.records)
    back, _ = sf.read(tmp_path / "a.wav", dtype="int16")
    assert (back[10:15, 0] == 32767).all() and (back[20:23, 1] == -32768).all()
    floats = _write(tmp_path / "f.wav", audio, bit_depth="float32")
    assert floats.clipped_samples == 8
    assert sf.read(tmp_path / "f.wav", dtype="float32")[0].max() == 1.0


def test_clip_none_keeps_float_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = _signal(peak=0.5)
    audio[0, 10:15] = 1.5
    writer = _write(tmp_path / "f.wav", audio, bit_depth="float32", clip="none")
    assert writer.clipped_samples == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "f.wav", dtype="float32")[0].T, audio)
    with caplog.at_level(logging.WARNING, logger="stemsplit.audio.writer"):
        ints = _write(tmp_path / "i.wav", audio, clip="none")  # 16-bit cannot hold 1.5
    assert ints.clipped_samples == 5 and not caplog.records


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_rescale_divides_by_the_peak(tmp_path: Path, fmt: str) -> None:
    audio = _signal(peak=2.0)
    path = tmp_path / f"other.{fmt}"
    writer = _write(path, audio, format=fmt, clip="rescale")
    assert writer.gain == pytest.approx(0.5) and writer.clipped_samples == 0
    back, _ = sf.read(path, dtype="float64", always_2d=True)
    assert back.shape == (audio.shape[1], 2)
    if fmt != "ogg":
        # The peak lands on 1.0, which 16-bit stores as 32767/32768: one LSB there.
        assert np.abs(back.T - audio / 2.0).max() <= 1 / 2**15 + 1e-9
    assert np.abs(back).max() <= 1.0
    assert _leftovers(tmp_path) == []
    quiet = _write(tmp_path / "quiet.wav", _signal(peak=0.5), clip="rescale")
    assert quiet.gain == 1.0


@pytest.mark.parametrize("clip", ["clamp", "rescale"])
def test_exception_leaves_nothing(tmp_path: Path, clip: str) -> None:
    path = tmp_path / "vocals.flac"
    with pytest.raises(KeyError), StemWriter(path, RATE, 2, format="flac", clip=clip) as w:
        w.write(_signal())
        assert not path.exists() and len(_leftovers(tmp_path)) >= 1  # only a hidden partial
        raise KeyError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_abort_keeps_an_older_finished_file(tmp_path: Path) -> None:
    path = tmp_path / "vocals.wav"
    _write(path, _signal(peak=0.1))
    before = path.read_bytes()
    writer = StemWriter(path, RATE, 2)
    writer.write(_signal(peak=0.9))
    writer.abort()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    _write(path, _signal(peak=0.9))  # a finished write replaces it
    assert path.read_bytes() != before


@pytest.mark.parametrize(
    "options",
    [
        {"format": "mp3", "bit_depth": 24},
        {"format": "flac", "bit_depth": "float32"},
        {"format": "wav", "bit_depth": 32},
        {"format": "aac"},
        {"clip": "soft"},
        {"format": "mp3", "mp3_bitrate": 1000},
    ],
)
def test_invalid_options_are_usage_errors(tmp_path: Path, options: dict) -> None:
    with pytest.raises(UsageError) as caught:
        StemWriter(tmp_path / "x.out", RATE, 2, **options)
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_block_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError), StemWriter(tmp_path / "x.wav", RATE, 2) as writer:
        writer.write(np.zeros((3, 10), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError) as caught:
        StemWriter(blocker / "vocals.wav", RATE, 2)
    assert "vocals.wav" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("clip", ["clamp", "rescale"])
def test_disk_full_is_an_output_error(tmp_path: Path, clip: str) -> None:
    """A file-size limit (RLIMIT_FSIZE, like a full disk: EFBIG) in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        from stemsplit.audio.writer import StemWriter
        from stemsplit.errors import OutputError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        try:
            with StemWriter(sys.argv[1], 44100, 2, clip={clip!r}) as w:
                for _ in range(20):
                    w.write(np.full((2, 44100), 0.25, np.float32))
        except OutputError as err:
            print("OutputError:", err)
    """)
    target = tmp_path / "vocals.wav"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.startswith("OutputError: cannot write") and str(target) in done.stdout
    assert list(tmp_path.iterdir()) == []
