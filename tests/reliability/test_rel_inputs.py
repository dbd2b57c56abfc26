"""Inputs users bring, good and bad, through one real `stemsplit` batch run.

One run over every case (a batch never stops at a bad file), then one test per row of
docs/reliability.md. Expected lengths come from libsndfile (`soundfile.info`), never
from our own reader.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import label
from rel_cli import assert_one_line_failure, error_lines, leftovers, noise, stemsplit

RATE = 44100
TEMPLATE = "{track}_{trackext}/{stem}.{ext}"  # trunc.wav and trunc.flac must not clash
UNICODE_NAME = "héllo wörld 日本.wav"
SPACES_NAME = "  lots   of spaces  .wav"


def _cut(source: Path, target: Path, fraction: float = 0.5) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def _make_inputs(folder: Path) -> dict[str, Path]:
    x = noise(2.0)
    p = {name: folder / name for name in (
        "zero.wav", "text.wav", "image.mp3", "trunc.wav", "trunc.flac", "trunc.mp3",
        "tenhours.wav", "s0.wav", "s1.wav", "s100.wav", "silence.wav", "nan.wav",
        "r8k.wav", "r192k.wav", "mono.wav", "six.wav", UNICODE_NAME, SPACES_NAME,
    )}  # fmt: skip
    p["zero.wav"].write_bytes(b"")
    p["text.wav"].write_text("these are not samples\n" * 100)
    p["image.mp3"].write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(4000))
    whole = {}
    for name, fmt in (("wav", "WAV"), ("flac", "FLAC"), ("mp3", "MP3")):
        whole[name] = folder / f"whole.{name}.src"
        sf.write(whole[name], x, RATE, format=fmt)
        _cut(whole[name], p[f"trunc.{name}"])
    # a mono 16-bit WAV whose RIFF and data sizes claim 10 hours (2 s of samples follow)
    sf.write(p["tenhours.wav"], x[:, 0], RATE, subtype="PCM_16")
    header = bytearray(p["tenhours.wav"].read_bytes())
    claimed = 10 * 3600 * RATE * 2
    assert header[36:40] == b"data"
    struct.pack_into("<I", header, 40, claimed)
    struct.pack_into("<I", header, 4, claimed + 36)
    p["tenhours.wav"].write_bytes(bytes(header))
    for frames in (0, 1, 100):
        sf.write(p[f"s{frames}.wav"], x[:frames], RATE, subtype="PCM_16")
    sf.write(p["silence.wav"], np.zeros((RATE, 2), np.float32), RATE)
    bad = x.copy()
    bad[100:200, 0] = np.nan
    bad[300, 1] = np.inf
    bad[400, 0] = -np.inf
    sf.write(p["nan.wav"], bad, RATE, subtype="FLOAT")
    sf.write(p["r8k.wav"], noise(1.0, 8000), 8000)
    sf.write(p["r192k.wav"], noise(0.6, 192000), 192000)
    sf.write(p["mono.wav"], x[:, 0], RATE)
    sf.write(p["six.wav"], np.tile(x, (1, 3)), RATE)
    sf.write(p[UNICODE_NAME], x, RATE)
    sf.write(p[SPACES_NAME], x, RATE)
    for source in whole.values():
        source.unlink()
    p["missing.wav"] = folder / "missing.wav"
    return p


@pytest.fixture(scope="module")
def batch(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every input in one run: (inputs, {input name: track result}, process, out folder)."""
    folder = tmp_path_factory.mktemp("inputs")
    inputs = _make_inputs(folder)
    out = tmp_path_factory.mktemp("out")
    result = stemsplit(*inputs.values(), "--checkpoint", tiny_model, "-o", out,
                       "--filename", TEMPLATE, "--json")  # fmt: skip
    tracks = {Path(t["input"]).name: t for t in json.loads(result.stdout)["tracks"]}
    return inputs, tracks, result, out / label(tiny_model)


def _stems(out: Path, name: str) -> dict[str, np.ndarray]:
    track, ext = name.rsplit(".", 1)
    folder = out / f"{track}_{ext}"
    return {p.stem: sf.read(p, dtype="float32", always_2d=True)[0]
            for p in sorted(folder.glob("*.wav"))}  # fmt: skip


def test_batch_exit_code_and_stderr(batch) -> None:
    """Exit 1 (some inputs failed); one `error:` line per failed input, no tracebacks,
    and no decoder chatter (libmpg123 prints resync notes straight to fd 2)."""
    _, tracks, result, out = batch
    failed = {n for n, t in tracks.items() if t["status"] == "failed"}
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Note:" not in result.stderr and "Xing" not in result.stderr, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == len(failed)
    for name in failed:
        assert sum(name in line for line in lines) == 1, (name, lines)
    assert not leftovers(out.parent)


FAILURES = {  # input -> words its one-line error must contain
    "missing.wav": ["no such file", "check the path"],
    "zero.wav": ["empty (0 bytes)"],
    "text.wav": ["cannot decode", "not audio"],
    "image.mp3": ["no audio stream", "is it an audio file"],
    "trunc.flac": ["truncated or damaged"],
    "s0.wav": ["holds no samples", "nothing to separate"],
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_bad_input_fails_alone_with_a_clear_reason(batch, name: str) -> None:
    _, tracks, _, out = batch
    track = tracks[name]
    assert track["status"] == "failed"
    for words in FAILURES[name]:
        assert words in track["error"], track["error"]
    assert "\n" not in track["error"]
    track_stem, ext = name.rsplit(".", 1)
    assert not list((out / f"{track_stem}_{ext}").glob("*")) if (out / f"{track_stem}_{ext}").exists() else True


@pytest.mark.parametrize(
    "name, seconds",
    [("s1.wav", 1 / RATE), ("s100.wav", 100 / RATE), ("r8k.wav", 1.0), ("r192k.wav", 0.6),
     ("mono.wav", 2.0), ("six.wav", 2.0), (UNICODE_NAME, 2.0), (SPACES_NAME, 2.0),
     ("silence.wav", 1.0), ("nan.wav", 2.0)],
)  # fmt: skip
def test_odd_but_valid_inputs_give_exact_finite_stems(batch, name: str, seconds: float) -> None:
    """Tiny, mono, 6-channel, 8/192 kHz, silent, NaN-holding and oddly named inputs all
    give four stereo stems of exactly the input's length, at its rate, with no NaN."""
    inputs, tracks, _, out = batch
    assert tracks[name]["status"] == "done", tracks[name]["error"]
    info = sf.info(inputs[name])
    assert info.frames == round(seconds * info.samplerate)
    stems = _stems(out, name)
    assert sorted(stems) == ["bass", "drums", "other", "vocals"]
    for stem, audio in stems.items():
        assert audio.shape == (info.frames, 2), (stem, audio.shape)
        assert np.isfinite(audio).all(), stem
        assert sf.info(out / f"{name.rsplit('.', 1)[0]}_wav" / f"{stem}.wav").samplerate == info.samplerate


def test_silence_does_not_blow_up_the_normalisation(batch) -> None:
    """std = 0: Demucs divides by (std + 1e-8), so stems stay at the model's own
    output for a zero input: tiny, finite (it would be NaN dividing by 0)."""
    stems = _stems(batch[3], "silence.wav")
    assert all(np.abs(a).max() < 1.0 for a in stems.values())


def test_nan_and_inf_are_zeroed_with_a_warning(batch) -> None:
    assert "nan.wav contains NaN/Inf or absurd (beyond ±256) samples; replacing them with 0" in (
        " ".join(batch[2].stderr.split()))


def test_six_channels_are_downmixed_with_a_warning(batch) -> None:
    assert "six.wav has 6 channels; downmixing to 2" in batch[2].stderr


@pytest.mark.parametrize("name, promised", [("trunc.wav", "2.0 s"), ("tenhours.wav", "36000.0 s")])
def test_wav_shorter_than_its_header_is_separated_with_a_warning(batch, name, promised) -> None:
    """PCM WAV: every frame present is audio; we separate those (as libsndfile reads
    them, allocating nothing for the 10 hours claimed) and say the file is short."""
    inputs, tracks, result, out = batch
    assert tracks[name]["status"] == "done", tracks[name]["error"]
    frames = sf.info(inputs[name]).frames  # libsndfile's count of the frames present
    assert frames <= 2 * RATE
    assert all(a.shape[0] == frames for a in _stems(out, name).values())
    warning = " ".join(result.stderr.split())
    assert f"{name}: the header promises {promised}" in warning
    assert warning.count(f"{name}: the header promises") == 1  # once, not once per probe


def test_truncated_mp3_is_separated_as_far_as_it_goes_with_a_warning(batch) -> None:
    """MP3 frames decode on their own, like WAV samples: a cut file is not a failure."""
    _inputs, tracks, result, out = batch
    assert tracks["trunc.mp3"]["status"] == "done", tracks["trunc.mp3"]["error"]
    stems = _stems(out, "trunc.mp3")
    lengths = {a.shape[0] for a in stems.values()}
    assert len(lengths) == 1 and 0.5 * RATE < lengths.pop() < 1.5 * RATE
    warning = " ".join(result.stderr.split())
    assert "trunc.mp3 ends after" in warning and "separating what is there" in warning


def test_folder_without_audio_is_an_input_error(tmp_path: Path, tiny_model: Path) -> None:
    """A folder where a file was meant (even named like one) is searched for audio."""
    (tmp_path / "album.wav").mkdir()
    result = stemsplit(tmp_path / "album.wav", "--checkpoint", tiny_model, "-o", tmp_path)
    assert_one_line_failure(result, 1, "no audio files found")


def test_empty_folder_in_a_batch_is_named_and_the_rest_runs(tmp_path: Path,
                                                            tiny_model: Path) -> None:
    """A folder with no audio beside a real track: a warning names it, the track is split."""
    (tmp_path / "empty").mkdir()
    track = tmp_path / "song.wav"
    sf.write(track, noise(1.0), 44100)
    out = tmp_path / "out"
    result = stemsplit(tmp_path / "empty", track, "--checkpoint", tiny_model, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("empty: no audio files in this folder") == 1, result.stderr
    assert "-r" in result.stderr
    assert len(list(out.rglob("song/*.wav"))) >= 2


@pytest.mark.slow  # two more runs of the command
def test_debug_shows_the_traceback(tmp_path: Path, tiny_model: Path) -> None:
    empty = tmp_path / "zero.wav"
    empty.write_bytes(b"")
    plain = stemsplit(empty, "--checkpoint", tiny_model, "-o", tmp_path, "-q")
    assert_one_line_failure(plain, 1, "zero.wav is empty")
    debug = stemsplit(empty, "--checkpoint", tiny_model, "-o", tmp_path, "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
