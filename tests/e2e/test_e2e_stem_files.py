"""DJ-ready output through the real command on real music: NI Stems files (`-f stem.mp4`),
tags and cover art on every stem, peers' file names.

The reference stems are a float32 WAV run of the same model on the same input; the
stem files are read back with independent readers (PyAV decodes, the raw MP4 boxes,
ffprobe and stempeg where installed, mutagen for tags), never with stemsplit's code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from carried import MIXTURE
from e2e_cli import stemsplit
from stem_readers import decode_tracks, ffprobe_audio, png_cover, snr_db, stem_box, track_flags

SOURCES = ["drums", "bass", "other", "vocals"]
NI_STEMS = [{"name": "Drums", "color": "#009E73"}, {"name": "Bass", "color": "#D55E00"},
            {"name": "Other", "color": "#CC79A7"}, {"name": "Vocals", "color": "#56B4E9"}]
FRAMES = 2 * 44100 + 12345  # an odd length: no AAC or ALAC frame boundary


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real music as a tagged 24-bit FLAC with a PNG cover."""
    from mutagen.flac import FLAC, Picture

    mix, rate = soundfile.read(MIXTURE, dtype="float32", frames=FRAMES)  # the MUSDB18 clip
    path = tmp_path_factory.mktemp("tagged") / "song.flac"
    soundfile.write(str(path), mix, rate, subtype="PCM_24")
    tags = FLAC(str(path))
    tags["TITLE"], tags["ARTIST"], tags["ALBUM"] = "Eighties", "Music Delta", "MUSDB"
    cover = Picture()
    cover.data, cover.mime, cover.type = png_cover(), "image/png", 3
    tags.add_picture(cover)
    tags.save()
    return path


@pytest.fixture(scope="module")
def float_stems(tagged: Path, tiny_demucs: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, np.ndarray]:  # fmt: skip
    """The model's stems as float32 WAV: `(2, n)` float64 per stem."""
    out = tmp_path_factory.mktemp("float")
    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", out, "--bit-depth",
                            "float32", "--json"))  # fmt: skip
    paths = summary["tracks"][0]["stems"]
    return {stem: soundfile.read(paths[stem], dtype="float64")[0].T for stem in SOURCES}


def _ok(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _input(path: Path) -> np.ndarray:
    return soundfile.read(str(path), dtype="float64")[0].T


def _one_stem_file(summary: dict) -> Path:
    """Every stem of the track points at the same `.stem.mp4`."""
    (track,) = summary["tracks"]
    assert track["status"] == "done"
    paths = {Path(p) for p in track["stems"].values()}
    assert len(paths) == 1
    (path,) = paths
    assert path.name == "song.stem.mp4" and path.is_file()
    return path


def _check_ffprobe(path: Path, codec: str, frames: int) -> None:
    streams = ffprobe_audio(path)
    if streams is None:
        return  # ffprobe is a system program: this one sub-check needs it
    assert [s["codec_name"] for s in streams] == [codec] * 5
    assert {(s["sample_rate"], s["channels"], s["duration_ts"]) for s in streams} == {
        ("44100", 2, frames)}  # fmt: skip


def test_alac_24_bit_stem_file_is_the_input_and_the_float_stems(tagged, tiny_demucs,
                                                                 float_stems, tmp_path):
    """The bar: 5 ALAC tracks of the input's length; track 0 is the input bit for bit,
    tracks 1-4 the float stems at >= 90 dB SNR; NI's JSON; the input's tags and cover."""
    from mutagen.mp4 import MP4

    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path, "-f",
                            "stem.mp4", "--stem-codec", "alac", "--bit-depth", "24",
                            "--json"))  # fmt: skip
    path = _one_stem_file(summary)
    assert sorted(p.name for p in path.parent.iterdir()) == [".song.stemsplit.json",
                                                            "song.stem.mp4"]  # fmt: skip
    tracks = decode_tracks(path)
    assert [(codec, rate) for _, _, rate, codec in tracks] == [("alac", 44100)] * 5
    assert [(s.shape, duration) for s, duration, _, _ in tracks] == [((2, FRAMES), FRAMES)] * 5
    assert np.array_equal(tracks[0][0], _input(tagged))
    for (decoded, *_), stem in zip(tracks[1:], SOURCES):
        assert snr_db(float_stems[stem], decoded) >= 90, stem
    assert track_flags(path) == [3, 2, 2, 2, 2]  # players play the mix only
    box = stem_box(path)
    assert box["version"] == 1 and box["stems"] == NI_STEMS
    assert box["mastering_dsp"]["compressor"]["ratio"] == 3
    assert box["mastering_dsp"]["limiter"] == {"enabled": False, "release": 0.05,
                                               "threshold": 0, "ceiling": -0.35}  # fmt: skip
    tags = MP4(str(path)).tags
    assert (tags["\xa9nam"], tags["\xa9ART"], tags["\xa9alb"]) == (["Eighties"],
                                                                  ["Music Delta"], ["MUSDB"])
    assert [bytes(c) for c in tags["covr"]] == [png_cover()]
    _check_ffprobe(path, "alac", FRAMES)


def test_stempeg_opens_the_stem_file(tagged, tiny_demucs, tmp_path):
    """stempeg (MUSDB18's reader, through ffmpeg) reads five stereo stems."""
    stempeg = pytest.importorskip("stempeg")
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("stempeg decodes through the ffmpeg program")
    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path, "-f",
                            "stems", "--stem-codec", "alac", "--json"))  # fmt: skip
    path = _one_stem_file(summary)
    audio, rate = stempeg.read_stems(str(path))
    assert rate == 44100 and audio.shape == (5, FRAMES, 2)
    assert snr_db(_input(tagged).T, audio[0]) >= 80  # 16-bit ALAC (the default depth)


def test_aac_stem_file_exact_length_and_waveforms(tagged, tiny_demucs, float_stems, tmp_path):
    """AAC (the default codec): each track's edit list says the input's exact length;
    FFmpeg decodes it without the priming (the waveforms line up) and with at most one
    AAC frame of padding after it; each track >= 15 dB SNR to its float stem."""
    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path, "-f",
                            "stem.mp4", "--json"))  # fmt: skip
    path = _one_stem_file(summary)
    references = [_input(tagged), *(float_stems[s] for s in SOURCES)]
    for (decoded, duration, rate, codec), reference in zip(decode_tracks(path), references):
        assert (codec, rate, duration) == ("aac", 44100, FRAMES)
        assert FRAMES <= decoded.shape[1] < FRAMES + 1024
        assert snr_db(reference, decoded[:, :FRAMES]) >= 15
    _check_ffprobe(path, "aac", FRAMES)


def test_two_stems_mapped_labelled_and_coloured(tagged, tiny_demucs, float_stems, tmp_path):
    """--two-stems vocals: no_vocals goes to "other" (the default map), drums and bass
    are silent tracks; --stem-label and --stem-color rename and recolour slots."""
    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path, "-f",
                            "stem.mp4", "--stem-codec", "alac", "--bit-depth", "24",
                            "--two-stems", "vocals", "--stem-label", "other=Instrumental",
                            "--stem-color", "vocals=#FF0000,other=#00FF00",
                            "--json"))  # fmt: skip
    path = _one_stem_file(summary)
    tracks = [t[0] for t in decode_tracks(path)]
    mix = _input(tagged)
    assert not tracks[1].any() and not tracks[2].any()  # drums, bass: silent
    assert snr_db(mix - float_stems["vocals"], tracks[3]) >= 90
    assert snr_db(float_stems["vocals"], tracks[4]) >= 90
    names = [(s["name"], s["color"]) for s in stem_box(path)["stems"]]
    assert names == [("Drums", "#009E73"), ("Bass", "#D55E00"), ("Instrumental", "#00FF00"),
                     ("Vocals", "#FF0000")]  # fmt: skip


def test_every_flac_stem_carries_the_tags_and_cover(tagged, tiny_demucs, tmp_path):
    """-f flac: each stem has the input's artist, album and cover, its title names the stem;
    --no-copy-tags writes none."""
    from mutagen.flac import FLAC

    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path / "tagged",
                            "-f", "flac", "--json"))  # fmt: skip
    stems = summary["tracks"][0]["stems"]
    assert list(stems) == SOURCES
    for stem, path in stems.items():
        tags = FLAC(path)
        assert tags["TITLE"] == [f"Eighties ({stem.title()})"]
        assert (tags["ARTIST"], tags["ALBUM"]) == (["Music Delta"], ["MUSDB"])
        assert [p.data for p in tags.pictures] == [png_cover()]
    bare = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path / "bare", "-f",
                         "flac", "-s", "vocals", "--no-copy-tags", "--json"))  # fmt: skip
    tags = FLAC(bare["tracks"][0]["stems"]["vocals"])
    assert not tags.tags and not tags.pictures


def test_batch_with_uvr_names_resumes(tagged, tiny_demucs, tmp_path):
    """Two tracks to stem files named as UVR numbers them (`{n}_{track}`), under OUT;
    the rerun skips both from their records."""
    second = tmp_path / "in" / "other song.flac"
    second.parent.mkdir()
    shutil.copy(tagged, second)
    args = [tagged, second, "--checkpoint", tiny_demucs, "-o", tmp_path / "out", "-f",
            "stem.mp4", "--stem-codec", "alac", "--naming", "uvr", "--json"]
    first = _ok(stemsplit(*args))
    assert [t["status"] for t in first["tracks"]] == ["done", "done"]
    expected = [tmp_path / "out" / "1_song.stem.mp4", tmp_path / "out" / "2_other song.stem.mp4"]
    assert [Path(next(iter(t["stems"].values()))) for t in first["tracks"]] == expected
    assert all(len(decode_tracks(p)) == 5 for p in expected)
    again = _ok(stemsplit(*args))
    assert [t["status"] for t in again["tracks"]] == ["skipped", "skipped"]
    relabelled = stemsplit(*args, "--stem-label", "vocals=Vox")  # the record tells
    assert [t["status"] for t in _ok(relabelled)["tracks"]] == ["done", "done"]
    assert "redo song" in relabelled.stderr
    assert [s["name"] for s in stem_box(expected[1])["stems"]][3] == "Vox"


def test_audio_separator_names(tagged, tiny_demucs, tmp_path):
    """--naming audio-separator: OUT/{track}_({Stem})_{model}.{ext}."""
    summary = _ok(stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path, "-s",
                            "vocals,bass", "--naming", "audio-separator", "--json"))  # fmt: skip
    names = {stem: Path(p) for stem, p in summary["tracks"][0]["stems"].items()}
    assert {s: p.parent for s, p in names.items()} == {"bass": tmp_path, "vocals": tmp_path}
    assert names["vocals"].name.startswith("song_(Vocals)_") and names["vocals"].is_file()
    assert names["bass"].name.startswith("song_(Bass)_") and names["bass"].suffix == ".wav"


@pytest.mark.parametrize(("args", "message"), [
    (["-f", "stem.mp4", "-o", "-"], "-f stem.mp4 writes a file per track"),
    (["-f", "stem.mp4", "--stem-map", "other=other+guitar"], "--stem-map names guitar"),
    (["-f", "stem.mp4", "--stem-color", "vocals=red"], "--stem-color vocals=red: use #RRGGBB"),
    (["-f", "flac", "--stem-codec", "alac"], "--stem-codec shape(s) stem files"),
    (["-f", "stem.mp4", "--bit-depth", "24"], "AAC is lossy"),
])  # fmt: skip
def test_refusals_are_one_line(tagged, tiny_demucs, tmp_path, args, message):
    result = stemsplit(tagged, "--checkpoint", tiny_demucs, "-o", tmp_path / "x", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_stdin_cannot_make_a_stem_file(tagged, tiny_demucs, tmp_path):
    """Track 0 is the input file: stdin, read once as it arrives, cannot give it."""
    with open(tagged, "rb") as stdin:
        result = stemsplit("-", "--checkpoint", tiny_demucs, "-o", tmp_path / "x", "-f",
                           "stems", stdin=stdin)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "needs an input file" in result.stderr
    assert not (tmp_path / "x").exists()


def test_recipe_outputs_mapped_into_a_stem_file(tmp_path):
    """A two-step recipe (routed outputs accomp, lead, backing) into a stem file:
    other = accomp, vocals = lead + backing, equal to the recipe's float32 files."""
    from recipe_cli import long_mixture, two_step_recipe

    mix = long_mixture(tmp_path / "song.wav", 3.0)
    recipe = two_step_recipe(tmp_path / "two.toml")
    floats = _ok(stemsplit(mix, "--recipe", recipe, "-o", tmp_path / "float", "--bit-depth",
                           "float32", "--json"))["tracks"][0]["stems"]  # fmt: skip
    summary = _ok(stemsplit(mix, "--recipe", recipe, "-o", tmp_path / "stems", "-f", "stems",
                            "--stem-codec", "alac", "--bit-depth", "24", "--stem-map",
                            "other=accomp,vocals=lead+backing", "--json"))  # fmt: skip
    (path,) = {Path(p) for p in summary["tracks"][0]["stems"].values()}
    assert path.name == "song.stem.mp4"
    stems = {name: soundfile.read(p, dtype="float64")[0].T for name, p in floats.items()}
    tracks = [t[0] for t in decode_tracks(path)]
    assert not tracks[1].any() and not tracks[2].any()
    assert snr_db(stems["accomp"], tracks[3]) >= 90
    assert snr_db(stems["lead"] + stems["backing"], tracks[4]) >= 90
