"""Tags and cover art: read once from an input, written into every output file.

DJ and library software shows a stem by its tags, so each stem carries the input's
title, artist, album, ... and cover (UVR #420; NI Stems files keep them in `ilst`).
mutagen does every container's encoding; this module only maps a small neutral set of
fields onto ID3 frames (MP3, WAV, AIFF), MP4 atoms (M4A, .stem.mp4) and Vorbis comments
(FLAC, Ogg, Opus). A WAV without an ID3 chunk is read through libsndfile's LIST INFO.

Tags are an extra: a malformed tag or picture in the input, or one the output cannot
hold, is a warning and is skipped; it never fails a separation.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

from stemsplit.audio.remote import AudioInput, opened

logger = logging.getLogger(__name__)

# neutral name -> (ID3 frame, MP4 atom, Vorbis comment). Freeform MP4 atoms are
# "----:com.apple.iTunes:NAME", as iTunes, Traktor and MusicBrainz Picard write them.
FIELDS: dict[str, tuple[str, str, str]] = {
    "title": ("TIT2", "\xa9nam", "TITLE"),
    "artist": ("TPE1", "\xa9ART", "ARTIST"),
    "album": ("TALB", "\xa9alb", "ALBUM"),
    "albumartist": ("TPE2", "aART", "ALBUMARTIST"),
    "date": ("TDRC", "\xa9day", "DATE"),
    "genre": ("TCON", "\xa9gen", "GENRE"),
    "composer": ("TCOM", "\xa9wrt", "COMPOSER"),
    "tracknumber": ("TRCK", "trkn", "TRACKNUMBER"),
    "discnumber": ("TPOS", "disk", "DISCNUMBER"),
    "bpm": ("TBPM", "tmpo", "BPM"),
    "key": ("TKEY", "----:com.apple.iTunes:initialkey", "INITIALKEY"),
    "isrc": ("TSRC", "----:com.apple.iTunes:ISRC", "ISRC"),
    "label": ("TPUB", "----:com.apple.iTunes:LABEL", "LABEL"),
    "comment": ("COMM", "\xa9cmt", "COMMENT"),
}
# libsndfile's string fields of a WAV's LIST INFO chunk, by neutral name.
_INFO_FIELDS = ("title", "artist", "album", "date", "genre", "comment", "tracknumber")
# Files whose INFO chunk libsndfile reads (only these are opened for it: libmpg123 would
# print resync notes to the terminal for an untagged MP3).
_INFO_SUFFIXES = frozenset({".wav", ".wave", ".w64", ".rf64", ".aif", ".aiff", ".aifc"})
FRONT_COVER = 3  # the picture type (ID3 APIC / FLAC) DJ software shows


@dataclass(frozen=True)
class Picture:
    """One embedded image: its bytes, MIME type and ID3/FLAC picture type."""

    data: bytes = field(repr=False)
    mime: str = "image/jpeg"
    kind: int = FRONT_COVER
    description: str = ""


@dataclass(frozen=True)
class Tags:
    """A track's text tags (neutral names, see FIELDS) and pictures."""

    text: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pictures: tuple[Picture, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.text) or bool(self.pictures)

    def for_stem(self, label: str) -> Tags:
        """These tags for one stem's file: "Title (Vocals)", as UVR and DJ tools name
        stems, so a library lists the stems of a song apart. No title, no change."""
        title = self.text.get("title")
        if not title:
            return self
        return replace(self, text={**self.text, "title": (f"{title[0]} ({label})",)})


def read_tags(path: AudioInput) -> Tags:
    """The tags and pictures of `path`; empty Tags (and a warning) when unreadable."""
    import mutagen
    from mutagen.aiff import AIFF
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags
    from mutagen.wave import WAVE

    try:
        with opened(path) as source:  # an object in a bucket: read from its stream
            audio = mutagen.File(source)
        tags = getattr(audio, "tags", None)
        if isinstance(tags, ID3):
            return _read_id3(tags)
        if isinstance(tags, MP4Tags):
            return _read_mp4(tags)
        if tags is not None and hasattr(tags, "as_dict"):  # Vorbis comments
            return _read_vorbis(audio, tags)
    except Exception as err:  # any malformed input: tags are never worth a failed track
        logger.warning("%s: cannot read its tags (%s); the stems get none", path, err)
        return Tags()
    if isinstance(audio, (WAVE, AIFF)) or (audio is None and PurePath(str(path)).suffix.lower()
                                           in _INFO_SUFFIXES):  # fmt: skip
        return _read_info(path)
    return Tags()


def write_tags(path: str | Path, tags: Tags, kind: str) -> None:
    """Put `tags` into the file at `path`, a `kind` file (wav, flac, mp3, ogg, opus, mp4).

    A field or picture that cannot be written is skipped with a warning."""
    if not tags:
        return
    try:
        audio = _open_for_tags(path, kind)
        if audio.tags is None:
            audio.add_tags()
        writer = {"mp4": _write_mp4, "flac": _write_vorbis, "ogg": _write_vorbis,
                  "opus": _write_vorbis}.get(kind, _write_id3)  # fmt: skip
        writer(audio, tags)
        audio.save()
    except Exception as err:  # a tag problem never fails the stems themselves
        logger.warning("%s: could not write tags (%s); the file has none", path, err)


def _open_for_tags(path: str | Path, kind: str) -> Any:
    """The mutagen file object of our own output (its name may be a temporary one)."""
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    types = {"wav": WAVE, "flac": FLAC, "mp3": MP3, "ogg": OggVorbis, "opus": OggOpus,
             "mp4": MP4}  # fmt: skip
    return types[kind](str(path))


def _add(text: dict[str, tuple[str, ...]], name: str, values: Any) -> None:
    cleaned = tuple(str(v).strip() for v in values if str(v).strip())
    if cleaned:
        text[name] = cleaned


# -- ID3 (MP3, WAV, AIFF) ---------------------------------------------------------------


def _read_id3(tags: Any) -> Tags:
    text: dict[str, tuple[str, ...]] = {}
    for name, (frame, _, _) in FIELDS.items():
        frames = tags.getall(frame)
        if frame == "COMM":  # the plain comment, not iTunes' bookkeeping ones
            frames = [f for f in frames if not f.desc.startswith("iTun")]
        _add(text, name, [str(t) for f in frames[:1] for t in f.text])
    pictures = tuple(Picture(bytes(f.data), f.mime or "image/jpeg", int(f.type), f.desc)
                     for f in tags.getall("APIC") if f.data)  # fmt: skip
    return Tags(text, pictures)


def _write_id3(audio: Any, tags: Tags) -> None:
    from mutagen import id3

    frames = audio.tags
    for name, values in tags.text.items():
        frame = FIELDS[name][0]
        if frame == "COMM":
            frames.add(id3.COMM(encoding=3, lang="eng", desc="", text=list(values)))
        else:
            frames.add(getattr(id3, frame)(encoding=3, text=list(values)))
    for picture in tags.pictures:
        frames.add(id3.APIC(encoding=3, mime=picture.mime, type=picture.kind,
                            desc=picture.description, data=picture.data))  # fmt: skip


# -- MP4 (M4A, .stem.mp4) ---------------------------------------------------------------


def _read_mp4(tags: Any) -> Tags:
    from mutagen.mp4 import MP4Cover

    text: dict[str, tuple[str, ...]] = {}
    for name, (_, atom, _) in FIELDS.items():
        values = tags.get(atom, [])
        if atom in ("trkn", "disk"):  # (number, total) pairs
            values = [f"{n}/{total}" if total else str(n) for n, total in values]
        elif atom.startswith("----"):
            values = [bytes(v).decode("utf-8", "replace") for v in values]
        _add(text, name, values)
    pictures = tuple(
        Picture(bytes(c), "image/png" if c.imageformat == MP4Cover.FORMAT_PNG else "image/jpeg")
        for c in tags.get("covr", [])
    )
    return Tags(text, pictures)


def _write_mp4(audio: Any, tags: Tags) -> None:
    from mutagen.mp4 import MP4Cover, MP4FreeForm

    atoms = audio.tags
    for name, values in tags.text.items():
        atom = FIELDS[name][1]
        try:
            if atom in ("trkn", "disk"):
                number, _, total = values[0].partition("/")
                atoms[atom] = [(int(number), int(total or 0))]
            elif atom == "tmpo":
                atoms[atom] = [round(float(values[0]))]
            elif atom.startswith("----"):
                atoms[atom] = [MP4FreeForm(v.encode("utf-8")) for v in values]
            else:
                atoms[atom] = list(values)
        except ValueError:
            logger.warning("%s: tag %s=%r does not fit MP4's %s; skipped",
                           audio.filename, name, values[0], atom)  # fmt: skip
    formats = {"image/jpeg": MP4Cover.FORMAT_JPEG, "image/jpg": MP4Cover.FORMAT_JPEG,
               "image/png": MP4Cover.FORMAT_PNG}  # fmt: skip
    covers = [MP4Cover(p.data, formats[p.mime.lower()]) for p in tags.pictures
              if p.mime.lower() in formats]  # fmt: skip
    if len(covers) < len(tags.pictures):
        logger.warning("%s: MP4 holds JPEG and PNG covers only; %d picture(s) skipped",
                       audio.filename, len(tags.pictures) - len(covers))  # fmt: skip
    if covers:
        atoms["covr"] = covers


# -- Vorbis comments (FLAC, Ogg Vorbis, Opus) -------------------------------------------


def _read_vorbis(audio: Any, tags: Any) -> Tags:
    from mutagen.flac import Picture as FlacPicture

    text: dict[str, tuple[str, ...]] = {}
    for name, (_, _, key) in FIELDS.items():
        _add(text, name, tags.get(key, []))
    blocks = list(getattr(audio, "pictures", []))  # FLAC's own picture blocks
    for encoded in tags.get("METADATA_BLOCK_PICTURE", []):  # Ogg: base64 FLAC pictures
        try:
            blocks.append(FlacPicture(base64.b64decode(encoded)))
        except Exception as err:
            logger.warning("%s: skipped a malformed cover picture (%s)", audio.filename, err)
    pictures = tuple(Picture(bytes(b.data), b.mime or "image/jpeg", int(b.type), b.desc)
                     for b in blocks if b.data)  # fmt: skip
    return Tags(text, pictures)


def _write_vorbis(audio: Any, tags: Tags) -> None:
    from mutagen.flac import FLAC
    from mutagen.flac import Picture as FlacPicture

    for name, values in tags.text.items():
        audio.tags[FIELDS[name][2]] = list(values)
    for picture in tags.pictures:
        block = FlacPicture()
        block.data, block.mime, block.type = picture.data, picture.mime, picture.kind
        block.desc = picture.description
        if isinstance(audio, FLAC):
            audio.add_picture(block)
        else:
            encoded = base64.b64encode(block.write()).decode("ascii")
            audio.tags["METADATA_BLOCK_PICTURE"] = [
                *audio.tags.get("METADATA_BLOCK_PICTURE", []), encoded]


# -- WAV LIST INFO (read only, through libsndfile) --------------------------------------


def _read_info(path: AudioInput) -> Tags:
    """A WAV's LIST INFO strings (libsndfile reads them; mutagen reads only ID3)."""
    import soundfile

    try:
        with opened(path) as source, soundfile.SoundFile(source) as sound:
            text: dict[str, tuple[str, ...]] = {}
            for name in _INFO_FIELDS:
                _add(text, name, [getattr(sound, name, "") or ""])
            return Tags(text)
    except Exception:  # not a libsndfile format: no tags to read
        return Tags()
