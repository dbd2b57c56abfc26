"""`stemsplit` on real files: every stem exists, in the asked format, rate, bit depth, length.

Expected lengths come from decoding the inputs independently (libsndfile, or a full
PyAV decode for AAC), never from stemsplit's own reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from cli_run import label
from e2e_cli import decoded_frames, stemsplit

AUDIO_EXTENSIONS = {"wav", "flac", "mp3", "ogg", "opus"}
SOURCES = ["drums", "bass", "other", "vocals"]


def _expected_frames(path: Path, out_rate: int | None = None) -> tuple[int, int]:
    """(rate, frames) a stem of `path` must have at `out_rate` (None: the input's rate)."""
    frames = decoded_frames(path)
    try:
        in_rate = soundfile.info(str(path)).samplerate
    except (soundfile.SoundFileError, RuntimeError):
        import av

        with av.open(str(path)) as container:
            in_rate = container.streams.audio[0].rate
    if out_rate is None:
        return in_rate, frames
    return out_rate, round(frames * out_rate / in_rate)


def _check_stem(path: Path, container: str, subtype: str, rate: int, frames: int) -> None:
    assert path.is_file(), path
    info = soundfile.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.channels) == (
        container, subtype, rate, 2), (path, info)  # fmt: skip
    assert decoded_frames(path) == frames, path


def _audio_files(folder: Path) -> list[str]:
    """The audio files in `folder` (metadata such as `stemsplit.json` may sit beside)."""
    return sorted(p.name for p in folder.iterdir() if p.suffix.lstrip(".") in AUDIO_EXTENSIONS)


def _ok(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_default_wav_every_input_exact_length_and_json(inputs, tiny_demucs, tmp_path):
    """Six inputs in one batch: 16-bit WAV at each input's own rate and exact length."""
    order = ["stereo", "mono", "hirate", "mp3", "surround", "m4a"]
    summary = _ok(stemsplit(*(inputs[k] for k in order), "--checkpoint", tiny_demucs,
                            "-o", tmp_path, "--json"))  # fmt: skip
    assert (summary["done"], summary["skipped"], summary["failed"]) == (6, 0, 0)
    assert [Path(t["input"]).name for t in summary["tracks"]] == [inputs[k].name for k in order]
    for key, track in zip(order, summary["tracks"]):
        source = inputs[key]
        rate, frames = _expected_frames(source)
        assert track["status"] == "done" and track["error"] is None
        assert track["audio_seconds"] == pytest.approx(frames / rate, abs=1e-3)
        stem_paths = {stem: Path(p) for stem, p in track["stems"].items()}
        assert list(stem_paths) == SOURCES
        for stem, path in stem_paths.items():
            # the default template: OUT/<model>/<track>/<stem>.<ext>, model = file stem
            assert path == tmp_path / label(tiny_demucs) / source.stem / f"{stem}.wav"
            _check_stem(path, "WAV", "PCM_16", rate, frames)
    leftovers = [p for p in tmp_path.rglob(".*")]
    assert leftovers == []  # no spool or partial files left behind


def test_stem_mp4_through_pyav_to_ogg_with_template(musdb, tiny_demucs, tmp_path):
    """A MUSDB `.stem.mp4` (stream 0 = mixture; its first 3 s, remuxed packet for packet)
    to Ogg Vorbis: decoded length.

    The container's duration (what `probe` reports for PyAV inputs) is 16 frames short
    of what the AAC stream decodes to (152 in the whole track); stems used to be cut to it.
    """
    from stemsplit.audio.reader import probe

    source = musdb / "Music Delta - 80s Rock.stem.mp4"
    rate, frames = _expected_frames(source)
    # The FLAC mixture was decoded losslessly from this file: an independent length.
    assert frames == soundfile.info(str(musdb / "mixture.flac")).frames == 132_096
    assert probe(source).frames == 132_080  # the estimate: a length the stems must not have
    template = "{model}_{track}.{trackext}/{stem}-{model}.{ext}"
    summary = _ok(stemsplit(source, "--checkpoint", tiny_demucs, "-o", tmp_path, "-s",
                            "vocals,drums", "-f", "ogg", "--filename", template,
                            "--json"))  # fmt: skip
    name = label(tiny_demucs)
    folder = tmp_path / name / f"{name}_Music Delta - 80s Rock.stem.mp4"
    expected = {s: folder / f"{s}-{name}.ogg" for s in ("drums", "vocals")}  # model order
    assert {k: Path(v) for k, v in summary["tracks"][0]["stems"].items()} == expected
    assert _audio_files(folder) == [f"drums-{name}.ogg", f"vocals-{name}.ogg"]
    for path in expected.values():
        _check_stem(path, "OGG", "VORBIS", rate, frames)


def test_two_stems_sum_to_the_input(inputs, tiny_demucs, tmp_path):
    """`--two-stems vocals` in float32: vocals + no_vocals == the input (mono: per channel)."""
    keys = ["stereo", "hirate", "mono"]
    _ok(stemsplit(*(inputs[k] for k in keys), "--checkpoint", tiny_demucs, "-o", tmp_path,
                  "--two-stems", "vocals", "--bit-depth", "float32",
                  "--filename", "{track}_{stem}.{ext}", "--json"))  # fmt: skip
    for key in keys:
        source = inputs[key]
        rate, frames = _expected_frames(source)
        mix = soundfile.read(str(source), dtype="float32", always_2d=True)[0].T
        stems = {}
        for stem in ("vocals", "no_vocals"):
            path = tmp_path / label(tiny_demucs) / f"{source.stem}_{stem}.wav"
            _check_stem(path, "WAV", "FLOAT", rate, frames)
            stems[stem] = soundfile.read(str(path), dtype="float32", always_2d=True)[0].T
        assert [p for p in _audio_files(tmp_path / label(tiny_demucs)) if p.startswith(source.stem)] == [
            f"{source.stem}_no_vocals.wav", f"{source.stem}_vocals.wav"]  # fmt: skip
        assert np.abs(stems["vocals"]).max() > 1e-3  # the model really separated something
        total = stems["vocals"] + stems["no_vocals"]
        error = np.abs(total - mix).max()  # a mono input: both channels equal it
        assert error <= 1e-6, (key, error)


@pytest.mark.parametrize(
    ("keys", "options", "container", "subtype", "out_rate"),
    [
        (["stereo", "mono"], ["-f", "flac", "--bit-depth", "24", "--samplerate", "32000"],
         "FLAC", "PCM_24", 32000),
        (["hirate"], ["-f", "mp3", "--samplerate", "model"], "MP3", "MPEG_LAYER_III", 44100),
        (["stereo"], ["-f", "opus"], "OGG", "OPUS", 48000),  # libopus: 48 kHz only
    ],
    ids=["flac24-32k", "mp3-model-rate", "opus"],
)  # fmt: skip
def test_formats_rates_and_stem_selection(inputs, tiny_demucs, tmp_path, keys, options,
                                          container, subtype, out_rate):
    ext = options[options.index("-f") + 1]
    _ok(stemsplit(*(inputs[k] for k in keys), "--checkpoint", tiny_demucs, "-o", tmp_path,
                  "-s", "bass,vocals", *options, "--json"))  # fmt: skip
    for key in keys:
        rate, frames = _expected_frames(inputs[key], out_rate)
        folder = tmp_path / label(tiny_demucs) / inputs[key].stem
        assert _audio_files(folder) == [f"bass.{ext}", f"vocals.{ext}"]
        for stem in ("bass", "vocals"):
            _check_stem(folder / f"{stem}.{ext}", container, subtype, rate, frames)
