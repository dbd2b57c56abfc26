"""Tags and cover art (`audio.tags`): read from each input container, written into each
output format, checked with mutagen's own objects; malformed tags warn, never fail."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
from stem_readers import png_cover

from stemsplit.audio.tags import Picture, Tags, read_tags, write_tags
from stemsplit.audio.writer import StemWriter

TAGS = Tags({"title": ("Song",), "artist": ("Band",), "album": ("Record",),
             "date": ("1984",), "genre": ("Rock",), "tracknumber": ("3/12",), "bpm": ("124",),
             "key": ("8A",)}, (Picture(png_cover(), "image/png"),))  # fmt: skip
AUDIO = (0.1 * np.sin(np.linspace(0, 600, 12000))).astype(np.float32)[None].repeat(2, 0)


def _stem(tmp_path: Path, fmt: str, tags: Tags | None) -> Path:
    """A stem written by StemWriter with `tags` (what every separation does)."""
    ext = {"opus": "opus"}.get(fmt, fmt)
    with StemWriter(tmp_path / f"stem.{ext}", 48000, 2, format=fmt, tags=tags) as writer:
        writer.write(AUDIO)
    return writer.path


def _mutagen_view(path: Path) -> tuple[dict[str, str], list[bytes]]:
    """title, artist, album, track and the pictures, as mutagen's native objects hold them."""
    import mutagen
    from mutagen.flac import FLAC
    from mutagen.flac import Picture as FlacPicture
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    audio = mutagen.File(str(path))
    tags = audio.tags
    if isinstance(tags, ID3):
        text = {k: str(tags[f]) for k, f in (("title", "TIT2"), ("artist", "TPE1"),
                ("album", "TALB"), ("track", "TRCK"))}  # fmt: skip
        return text, [f.data for f in tags.getall("APIC")]
    if isinstance(tags, MP4Tags):
        number, total = tags["trkn"][0]
        text = {"title": tags["\xa9nam"][0], "artist": tags["\xa9ART"][0],
                "album": tags["\xa9alb"][0], "track": f"{number}/{total}"}  # fmt: skip
        return text, [bytes(c) for c in tags["covr"]]
    text = {k: tags[k.upper() if k != "track" else "TRACKNUMBER"][0]
            for k in ("title", "artist", "album", "track")}  # fmt: skip
    if isinstance(audio, FLAC):
        return text, [p.data for p in audio.pictures]
    pictures = [FlacPicture(base64.b64decode(v)).data for v in tags["METADATA_BLOCK_PICTURE"]]
    return text, pictures


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus"])
def test_every_output_format_gets_the_tags_and_cover(tmp_path, fmt):
    path = _stem(tmp_path, fmt, TAGS.for_stem("Vocals"))
    text, pictures = _mutagen_view(path)
    assert text == {"title": "Song (Vocals)", "artist": "Band", "album": "Record",
                    "track": "3/12"}  # fmt: skip
    assert pictures == [png_cover()]
    assert soundfile.read(str(path))[0].shape[0] > 0  # still audio libsndfile reads
    back = read_tags(path)  # and what stemsplit reads back is what it wrote
    assert back.text["bpm"] == ("124",) and back.text["key"] == ("8A",)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "opus", "mp4"])
def test_read_from_every_input_container(tmp_path, fmt):
    """Tags written by mutagen's own API per container, read into the neutral form."""
    if fmt == "mp4":
        from e2e_cli import write_m4a

        path = write_m4a(tmp_path / "in.m4a", AUDIO.T.copy(), 44100)
    else:
        path = _stem(tmp_path, fmt, None)
    write_tags(path, TAGS, fmt)
    tags = read_tags(path)
    assert {k: tags.text[k] for k in ("title", "artist", "album", "date", "genre",
                                       "tracknumber")} == {  # fmt: skip
        "title": ("Song",), "artist": ("Band",), "album": ("Record",), "date": ("1984",),
        "genre": ("Rock",), "tracknumber": ("3/12",)}
    assert [(p.data, p.mime) for p in tags.pictures] == [(png_cover(), "image/png")]


def test_wav_list_info_is_read_through_libsndfile(tmp_path):
    path = tmp_path / "info.wav"
    with soundfile.SoundFile(str(path), "w", 44100, 2, subtype="PCM_16") as sound:
        sound.title, sound.artist, sound.album = "Info Title", "Info Artist", "Info Album"
        sound.write(AUDIO.T)
    tags = read_tags(path)
    assert (tags.text["title"], tags.text["artist"], tags.text["album"]) == (
        ("Info Title",), ("Info Artist",), ("Info Album",))  # fmt: skip


def test_a_malformed_cover_is_skipped_with_a_warning(tmp_path, caplog):
    from mutagen.oggvorbis import OggVorbis

    path = _stem(tmp_path, "ogg", Tags({"title": ("Song",)}))
    audio = OggVorbis(str(path))
    audio["METADATA_BLOCK_PICTURE"] = ["not base64 of a picture!"]
    audio.save()
    with caplog.at_level(logging.WARNING):
        tags = read_tags(path)
    assert tags.text["title"] == ("Song",) and tags.pictures == ()
    assert "malformed cover" in caplog.text


def test_an_unreadable_file_gives_no_tags_and_a_warning(tmp_path, caplog):
    path = tmp_path / "broken.flac"
    path.write_bytes(b"fLaC" + b"\xff" * 64)  # a FLAC header, then garbage
    with caplog.at_level(logging.WARNING):
        assert not read_tags(path)
    assert "cannot read its tags" in caplog.text


def test_values_mp4_cannot_hold_are_skipped(tmp_path, caplog):
    """A non-numeric track number and a GIF cover: warnings, the rest is written."""
    from e2e_cli import write_m4a
    from mutagen.mp4 import MP4

    path = write_m4a(tmp_path / "x.m4a", AUDIO.T.copy(), 44100)
    odd = Tags({"title": ("Song",), "tracknumber": ("A1",)},
               (Picture(b"GIF89a", "image/gif"),))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        write_tags(path, odd, "mp4")
    tags = MP4(str(path)).tags
    assert tags["\xa9nam"] == ["Song"] and "trkn" not in tags and "covr" not in tags
    assert "does not fit" in caplog.text and "JPEG and PNG covers only" in caplog.text


def test_for_stem_titles_only_a_track_with_a_title():
    assert TAGS.for_stem("Drums").text["title"] == ("Song (Drums)",)
    untitled = Tags({"artist": ("Band",)})
    assert untitled.for_stem("Drums") == untitled
