"""NI Stems files (`audio.stem_mp4`): slot mapping, option parsing, and the written MP4
read back with independent readers (PyAV decodes, raw boxes, ffprobe, mutagen)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from stem_readers import boxes, decode_tracks, ffprobe_audio, png_cover, snr_db, stem_box

from stemsplit.audio.stem_mp4 import StemFile, add_movie_box, file_samplerate, resolve_slots
from stemsplit.audio.tags import Picture, Tags
from stemsplit.errors import UsageError
from stemsplit.options import OutputOptions, parse_slot_values, parse_stem_map

SIX = ("drums", "bass", "other", "vocals", "guitar", "piano")


def _sources(slots) -> list[tuple[str, ...]]:
    return [slot.sources for slot in slots]


def test_four_stems_fill_their_own_slots_with_ni_names_and_colours():
    slots = resolve_slots(["drums", "bass", "other", "vocals"])
    assert [(s.slot, s.label, s.color) for s in slots] == [
        ("drums", "Drums", "#009E73"), ("bass", "Bass", "#D55E00"),
        ("other", "Other", "#CC79A7"), ("vocals", "Vocals", "#56B4E9")]  # fmt: skip
    assert _sources(slots) == [("drums",), ("bass",), ("other",), ("vocals",)]


def test_six_stems_guitar_and_piano_go_to_other():
    assert _sources(resolve_slots(SIX)) == [("drums",), ("bass",), ("other", "guitar", "piano"),
                                            ("vocals",)]  # fmt: skip


def test_two_stems_default_and_mapped():
    """vocals + instrumental: the instrumental lands in other, drums and bass silent; a
    map places it elsewhere, and slots it leaves out stay silent."""
    assert _sources(resolve_slots(["vocals", "instrumental"])) == [(), (), ("instrumental",),
                                                                   ("vocals",)]  # fmt: skip
    mapped = resolve_slots(["vocals", "instrumental"], parse_stem_map("drums=instrumental"))
    assert _sources(mapped) == [("instrumental",), (), (), ("vocals",)]


def test_an_explicit_map_drops_unnamed_stems_and_keeps_same_named_slots():
    slots = resolve_slots(SIX, parse_stem_map("other=guitar+piano"))
    assert _sources(slots) == [("drums",), ("bass",), ("guitar", "piano"), ("vocals",)]


def test_labels_and_colours_per_slot():
    slots = resolve_slots(["vocals"], (), parse_slot_values("other=Melody", "--stem-label"),
                          parse_slot_values({"vocals": "#FF0000"}, "--stem-color"))  # fmt: skip
    assert [(s.label, s.color) for s in slots][2:] == [("Melody", "#CC79A7"),
                                                       ("Vocals", "#FF0000")]  # fmt: skip


@pytest.mark.parametrize(("call", "message"), [
    (lambda: parse_stem_map("lead=vocals"), "unknown slot 'lead'"),
    (lambda: parse_stem_map("vocals"), "use SLOT=VALUE"),
    (lambda: parse_slot_values("vocals=blue", "--stem-color"), "use #RRGGBB"),
    (lambda: resolve_slots(["vocals"], parse_stem_map("other=piano")), "names piano"),
    (lambda: OutputOptions(format="stems", stem_codec="mp3"), "unknown --stem-codec"),
    (lambda: OutputOptions(format="stems", stem_codec="alac", bit_depth="float32"), "16 or 24"),
    (lambda: OutputOptions(format="stems", bit_depth=16), "AAC is lossy"),
    (lambda: OutputOptions(format="stems", report=True), "--report"),
    (lambda: OutputOptions(format="stems", filename="{track}/{stem}.{ext}"), "drop {stem}"),
    (lambda: OutputOptions(format="wav", stem_map="other=piano"), "add -f stem.mp4"),
    (lambda: OutputOptions(format="stems", stdout=True), "not with -o -"),
    (lambda: OutputOptions(naming="spleeter"), "unknown --naming"),
    (lambda: OutputOptions(naming="uvr", filename="{stem}.{ext}"), "contradict"),
])  # fmt: skip
def test_bad_values_are_usage_errors(call, message):
    with pytest.raises(UsageError) as caught:
        call()
    assert message in str(caught.value)


def test_options_normalise_stem_file_values():
    options = OutputOptions(format=".STEMS", stem_codec="alac", stem_map="other=other+piano")
    assert (options.format, options.bit_depth, options.filename) == ("stem.mp4", 16,
                                                                     "{reldir}{track}.{ext}")
    assert options.stem_map == (("other", ("other", "piano")),) and options.stem_file
    named = OutputOptions(format="stems", naming="audio-separator")
    assert named.filename == "{reldir}{track}_{model}.{ext}"


@pytest.mark.parametrize(("rate", "expected"), [(44100, 44100), (48000, 48000),
                                                (22050, 44100), (96000, 48000), (32000, 48000)])
def test_file_rate_is_44_1_or_48_khz(rate, expected):
    assert file_samplerate(rate) == expected


def _write(tmp_path: Path, stems: dict[str, np.ndarray], rate: int, codec: str, depth=None,
           tags: Tags | None = None, mix: np.ndarray | None = None, block: int = 7000) -> Path:
    """A StemFile fed as the pipeline feeds it: every stem in blocks, in turn."""
    source = tmp_path / "input.wav"
    mix = sum(stems.values()) if mix is None else mix
    soundfile.write(str(source), mix.T, rate, subtype="FLOAT")
    path = tmp_path / "song.stem.mp4"
    stem_file = StemFile(path, source, list(stems), resolve_slots(list(stems)), codec, depth,
                         "clamp", tags)  # fmt: skip
    sinks = {s: stem_file.open_stem(path, rate, mix.shape[0], stem=s) for s in stems}
    frames = mix.shape[1]
    for start in range(0, frames, block):
        for stem, sink in sinks.items():
            sink.write(stems[stem][:, start:start + block])
    for sink in sinks.values():
        sink.close()
    return path


def _tones(frames: int, rate: int, names=SIX, channels: int = 2) -> dict[str, np.ndarray]:
    """A different tone per stem and channel, `(channels, frames)` float32."""
    time = np.arange(frames) / rate
    return {name: np.stack([0.1 * np.sin(2 * np.pi * (110 * (i + 1) + 7 * c) * time)
                            for c in range(channels)]).astype(np.float32)
            for i, name in enumerate(names)}  # fmt: skip


def test_alac_24_six_stems_summed_into_four_tracks(tmp_path):
    """24-bit ALAC: track 0 the input, other = other + guitar + piano, each >= 120 dB
    (24-bit quantisation only); nothing left beside the file."""
    frames, rate = 44100 + 4321, 44100
    stems = _tones(frames, rate)
    path = _write(tmp_path, stems, rate, "alac", 24)
    references = [sum(stems.values()), stems["drums"], stems["bass"],
                  stems["other"] + stems["guitar"] + stems["piano"], stems["vocals"]]
    tracks = decode_tracks(path)
    assert [(t[0].shape[1], t[1], t[2], t[3]) for t in tracks] == [(frames, frames, rate,
                                                                     "alac")] * 5
    for (decoded, *_), reference in zip(tracks, references):
        assert snr_db(reference, decoded) >= 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.wav", "song.stem.mp4"]


def test_aac_edit_list_and_itunsmpb_say_the_exact_length(tmp_path):
    """AAC: the container's duration is the input's length; FFmpeg's decode starts on the
    first sample (priming trimmed) and >= 15 dB SNR; iTunSMPB carries the same count."""
    from mutagen.mp4 import MP4

    frames, rate = 3 * 48000 + 777, 48000
    stems = _tones(frames, rate, ("drums", "bass", "other", "vocals"))
    path = _write(tmp_path, stems, rate, "aac")
    references = [sum(stems.values()), *stems.values()]
    for (decoded, duration, file_rate, codec), reference in zip(decode_tracks(path),
                                                                references):  # fmt: skip
        assert (duration, file_rate, codec) == (frames, rate, "aac")
        assert frames <= decoded.shape[1] < frames + 1024
        assert snr_db(reference, decoded[:, :frames]) >= 15
    smpb = bytes(MP4(str(path)).tags["----:com.apple.iTunes:iTunSMPB"][0]).decode().split()
    assert int(smpb[1], 16) == 1024 and int(smpb[3], 16) == frames
    assert (int(smpb[1], 16) + frames + int(smpb[2], 16)) % 1024 == 0
    streams = ffprobe_audio(path)
    if streams is not None:
        assert [(s["codec_name"], s["duration_ts"]) for s in streams] == [("aac", frames)] * 5


def test_mono_stems_resampled_to_44_1_khz_stereo(tmp_path):
    """A mono model at 22.05 kHz: stereo tracks at 44.1 kHz, twice the frames."""
    frames, rate = 22050 + 99, 22050
    stems = _tones(frames, rate, ("vocals", "instrumental"), channels=1)
    path = _write(tmp_path, stems, rate, "alac", 16)
    tracks = decode_tracks(path)
    assert {(t[0].shape, t[1], t[2]) for t in tracks} == {((2, 2 * frames), 2 * frames, 44100)}
    assert not tracks[1][0].any() and not tracks[2][0].any()  # drums, bass: silent
    vocals = tracks[4][0]
    assert np.array_equal(vocals[0], vocals[1]) and np.abs(vocals).max() > 0.05


def test_tags_and_cover_go_into_ilst_and_the_stem_box_into_udta(tmp_path):
    from mutagen.mp4 import MP4

    tags = Tags({"title": ("Song",), "artist": ("Band",), "tracknumber": ("3/12",),
                 "bpm": ("124",)}, (Picture(png_cover(), "image/png"),))  # fmt: skip
    path = _write(tmp_path, _tones(5000, 44100, ("drums", "vocals")), 44100, "alac", 16, tags)
    stored = MP4(str(path)).tags
    assert (stored["\xa9nam"], stored["\xa9ART"], stored["trkn"], stored["tmpo"]) == (
        ["Song"], ["Band"], [(3, 12)], [124])  # fmt: skip
    assert [bytes(c) for c in stored["covr"]] == [png_cover()]
    assert [s["name"] for s in stem_box(path)["stems"]] == ["Drums", "Bass", "Other", "Vocals"]
    found = boxes(path.read_bytes())
    assert list(found)[-1].startswith("moov") and len(found["moov/udta/stem"]) == 1


def test_a_failed_stem_leaves_nothing(tmp_path):
    source = tmp_path / "input.wav"
    soundfile.write(str(source), np.zeros((100, 2), np.float32), 44100)
    path = tmp_path / "song.stem.mp4"
    stem_file = StemFile(path, source, ["drums", "vocals"], resolve_slots(["drums", "vocals"]))
    drums = stem_file.open_stem(path, 44100, 2, stem="drums")
    drums.write(np.zeros((2, 100), np.float32))
    drums.close()
    stem_file.open_stem(path, 44100, 2, stem="vocals").abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.wav"]


def _mp4(tmp_path: Path, faststart: bool) -> Path:
    import av

    path = tmp_path / ("fast.mp4" if faststart else "plain.mp4")
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        stream = container.add_stream("alac", rate=44100)
        stream.layout, stream.format = "stereo", "s16p"
        frame = av.AudioFrame.from_ndarray(np.zeros((2, 5000), np.int16), format="s16p",
                                           layout="stereo")  # fmt: skip
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def test_add_movie_box_grows_moov_at_the_end_and_keeps_the_media(tmp_path):
    path = _mp4(tmp_path, faststart=False)
    before = decode_tracks(path)[0][0]
    add_movie_box(path, b"stem", b'{"version": 1}')
    add_movie_box(path, b"test", b"second")  # appended to the same udta
    data = path.read_bytes()
    found = boxes(data)
    (offset, size), = found["moov/udta/test"]
    assert data[offset:offset + size] == b"second" and len(found["moov/udta"]) == 1
    assert stem_box(path) == {"version": 1}
    assert np.array_equal(decode_tracks(path)[0][0], before)
    moov_offset, moov_size = found["moov"][0]
    assert moov_offset + moov_size == len(data)
    assert struct.unpack(">I", data[moov_offset - 8:moov_offset - 4])[0] == moov_size + 8


def test_add_movie_box_refuses_a_moov_before_the_media(tmp_path):
    """faststart puts moov first: growing it would shift every chunk offset."""
    path = _mp4(tmp_path, faststart=True)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="not its last box"):
        add_movie_box(path, b"stem", b"{}")
    assert path.read_bytes() == before
