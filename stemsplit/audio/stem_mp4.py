"""NI Stems files (`.stem.mp4`): the mix and four stems as five stereo tracks of one MP4.

The format (Native Instruments' Stems; read by Traktor, Mixxx 2.6+, djay, VirtualDJ):
track 0 is the mastered mix (here: the input), tracks 1-4 the stems in NI's slot order
drums, bass, other, vocals, each named and coloured by the JSON in a `moov/udta/stem`
box. Every track has one sample rate (44.1 or 48 kHz; Mixxx refuses mixed rates, Mixxx
#14572) and is AAC (256 kb/s: what Traktor on Windows decodes) or ALAC (16/24 bit).

How a track's stems get here: each planned stem streams into a float32 spool beside
the target (`StemFile.open_stem`, one sink per stem, so the engine writes as it does for
loose files); when the last stem closes, the spools are summed into the four slots
(`resolve_slots`: 6-stem guitar and piano go to "other"), the input is decoded again as
track 0, and PyAV (FFmpeg's muxer and encoders, bundled) writes the MP4 under a
temporary name. mutagen adds the input's tags and cover, then `add_movie_box` adds the
stem box, then the file is renamed onto its final name.

AAC priming: FFmpeg's encoder starts with 1024 samples of priming; the muxer writes an
edit list that skips them, and with the movie timescale set to the sample rate its
duration is the input's exact length (at the default 1/1000 s it would be rounded to a
millisecond). iTunSMPB says the same for Apple's decoders. Decoders built on FFmpeg
(up to 8.0) apply the edit list's start but not its end: they return the last AAC
frame whole, up to 1023 samples of encoder padding after the exact length.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from stemsplit.atomic import partial_path
from stemsplit.audio.formats import SLOTS, STEM_FILE_FORMAT
from stemsplit.audio.tags import Tags, write_tags
from stemsplit.errors import OutputError, UsageError, describe_os_error

logger = logging.getLogger(__name__)

STEM_FORMAT = STEM_FILE_FORMAT
DEFAULT_LABELS = {"drums": "Drums", "bass": "Bass", "other": "Other", "vocals": "Vocals"}
DEFAULT_COLORS = {"drums": "#009E73", "bass": "#D55E00", "other": "#CC79A7",
                  "vocals": "#56B4E9"}  # fmt: skip
# NI's defaults (the Stem Creator's, as stemgen writes them): both processors off.
MASTERING_DSP = {
    "compressor": {"enabled": False, "ratio": 3, "output_gain": 0.5, "release": 0.3,
                   "attack": 0.003, "input_gain": 0.5, "threshold": 0, "hp_cutoff": 300,
                   "dry_wet": 50},  # fmt: skip
    "limiter": {"enabled": False, "release": 0.05, "threshold": 0, "ceiling": -0.35},
}
AAC_BITRATE = 256_000
STEM_RATES = (44100, 48000)
_BLOCK = 2**16  # frames per encoded block


@dataclass(frozen=True)
class StemSlot:
    """One of tracks 1-4: its slot, the label and colour DJ software shows, and the
    planned stems summed into it (none: a silent track)."""

    slot: str
    label: str
    color: str
    sources: tuple[str, ...]


def resolve_slots(
    stems: Sequence[str],
    stem_map: Sequence[tuple[str, Sequence[str]]] = (),
    labels: Sequence[tuple[str, str]] = (),
    colors: Sequence[tuple[str, str]] = (),
) -> tuple[StemSlot, ...]:
    """Which planned stems go into which of the four tracks.

    A slot named in `stem_map` takes exactly its stems; another slot takes the stem of
    its own name if there is one (and no mapped slot took it). Without a map, stems that
    fit no slot (6-stem guitar and piano, `instrumental`, `no_vocals`) go to "other",
    so the four tracks still sum to the mix. A stem the map names that the run does not
    write is a UsageError; a slot with no stems is a silent track."""
    mapped = dict(stem_map)
    unknown = [s for sources in mapped.values() for s in sources if s not in stems]
    if unknown:
        raise UsageError(f"--stem-map names {', '.join(unknown)}, which this run does not "
                         f"write (it writes {', '.join(stems)})")  # fmt: skip
    taken = {s for sources in mapped.values() for s in sources}
    sources = {slot: tuple(mapped[slot]) if slot in mapped else
               ((slot,) if slot in stems and slot not in taken else ()) for slot in SLOTS}
    if not mapped:
        placed = {s for group in sources.values() for s in group}
        sources["other"] += tuple(s for s in stems if s not in placed)
    label, color = dict(labels), dict(colors)
    return tuple(StemSlot(slot, label.get(slot, DEFAULT_LABELS[slot]),
                          color.get(slot, DEFAULT_COLORS[slot]), sources[slot])
                 for slot in SLOTS)  # fmt: skip


def stem_json(slots: Sequence[StemSlot]) -> bytes:
    """The `stem` box's payload: NI's JSON (version 1, names and colours, mastering)."""
    document = {"version": 1,
                "stems": [{"name": s.label, "color": s.color} for s in slots],
                "mastering_dsp": MASTERING_DSP}  # fmt: skip
    return json.dumps(document).encode("utf-8")


def file_samplerate(rate: int) -> int:
    """The stem file's rate for stems at `rate`: 44.1 or 48 kHz, whichever family."""
    if rate in STEM_RATES:
        return rate
    return 44100 if rate % 11025 == 0 else 48000


# -- the per-track writer -------------------------------------------------------------


class StemFile:
    """One track's `.stem.mp4`, fed stem by stem through `open_stem` sinks."""

    def __init__(self, path: Path, input_path: Path, stems: Sequence[str],
                 slots: Sequence[StemSlot], codec: str = "aac", bit_depth: Any = None,
                 clip: str = "clamp", tags: Tags | None = None) -> None:  # fmt: skip
        self.path = Path(path)
        self.input_path = input_path  # a Path, or an object in a bucket (read as a stream)
        self.stems = tuple(stems)
        self.slots = tuple(slots)
        self.codec = codec
        self.bit_depth = int(bit_depth) if codec == "alac" and bit_depth else 16
        self.clip = clip
        self.tags = tags
        self.clipped: dict[str, int] = {}
        self._temp = partial_path(self.path)
        self._sinks: dict[str, _StemSpool] = {}
        self._open: set[str] = set()
        self._finished = False
        self.samplerate = 0
        self.channels = 0

    def open_stem(self, path: Path, samplerate: int, channels: int, *, stem: str,
                  **_options: Any) -> _StemSpool:  # fmt: skip
        """The sink the engine writes `stem` to (StemWriter's calls); the factory the
        pipeline calls with each stem's path (this file's) and writer options."""
        if Path(path) != self.path or stem not in self.stems or stem in self._sinks:
            raise ValueError(f"{stem!r} is not an open stem of {self.path}")
        self.samplerate, self.channels = samplerate, channels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        spool = self._temp.with_name(f"{self._temp.name}.{len(self._sinks)}.f32")
        sink = _StemSpool(self, stem, spool, channels)
        self._sinks[stem] = sink
        self._open.add(stem)
        return sink

    def stem_closed(self, stem: str) -> None:
        """A stem is complete; the last one writes the file."""
        self._open.discard(stem)
        if self._open or self._finished or set(self._sinks) != set(self.stems):
            return
        self._finished = True
        try:
            self._write()
        except (OSError, RuntimeError, ValueError) as err:
            self.abort()
            reason = describe_os_error(err, with_path=False) if isinstance(err, OSError) \
                else " ".join(str(err).split())
            raise OutputError(f"cannot write {self.path}: {reason}") from err
        except BaseException:
            self.abort()
            raise
        finally:
            for sink in self._sinks.values():
                sink.remove()

    def abort(self) -> None:
        """Nothing is left at `path` or beside it."""
        self._finished = True
        for sink in self._sinks.values():
            sink.remove()
        try:
            self._temp.unlink()
        except FileNotFoundError:
            pass

    # -- internals ---------------------------------------------------------------------

    def _write(self) -> None:
        lengths = {sink.frames for sink in self._sinks.values()}
        if len(lengths) != 1:
            raise ValueError(f"stems of different lengths {sorted(lengths)}")
        rate = file_samplerate(self.samplerate)
        if rate != self.samplerate:
            logger.info("%s: stem files are 44.1 or 48 kHz: resampled from %d Hz",
                        self.path.name, self.samplerate)  # fmt: skip
        length = round(lengths.pop() * rate / self.samplerate)
        gain = 1.0
        if self.clip == "rescale":
            peak = max((float(np.max(np.abs(b))) for b in self._tracks(rate, length)),
                       default=0.0)  # fmt: skip
            gain = 1.0 / peak if peak > 1.0 else 1.0
        encoder = Mp4Encoder(self._temp, rate, self.codec, self.bit_depth,
                             clamp=self.clip != "none")  # fmt: skip
        try:
            for block in self._tracks(rate, length):
                encoder.write(block * np.float32(gain) if gain != 1.0 else block)
        finally:
            priming, encoded = encoder.close()
        for index, count in enumerate(encoder.clipped[1:]):
            slot = self.slots[index]
            if count and slot.sources:
                self.clipped[slot.sources[0]] = count
        if any(encoder.clipped) and self.clip == "clamp":
            logger.warning("%s: %d samples clipped; use --clip rescale to scale the file "
                           "instead", self.path, sum(encoder.clipped))  # fmt: skip
        tags = self.tags or Tags()
        write_tags(self._temp, tags, "mp4")
        if self.codec == "aac":
            add_itunsmpb(self._temp, priming, encoded - priming - length, length)
        add_movie_box(self._temp, b"stem", stem_json(self.slots))
        os.replace(self._temp, self.path)

    def _tracks(self, rate: int, length: int) -> Iterator[np.ndarray]:
        """`[5, 2, n]` float32 blocks: the input, then each slot's sum, at `rate`."""
        from stemsplit.audio.blocks import align, fit_length
        from stemsplit.audio.reader import read_blocks

        mix = fit_length(read_blocks(self.input_path, samplerate=rate,
                                     channels=self.channels), length)  # fmt: skip
        slots = fit_length(self._slot_blocks(rate), length)
        for mix_block, slot_block in align([mix, slots]):
            block = np.concatenate([mix_block[None], slot_block])
            if block.shape[1] == 1:  # a mono model: NI Stems tracks are stereo
                block = np.repeat(block, 2, axis=1)
            yield np.ascontiguousarray(block, dtype=np.float32)

    def _slot_blocks(self, rate: int) -> Iterator[np.ndarray]:
        """`[4, C, n]`: each slot's stems summed (in float32, in plan order), resampled."""
        import soxr

        channels = self.channels
        stream = None if rate == self.samplerate else soxr.ResampleStream(
            self.samplerate, rate, 4 * channels, dtype="float32", quality="HQ")
        readers = {stem: sink.reader() for stem, sink in self._sinks.items()}
        try:
            while True:
                parts = {stem: next(reader, None) for stem, reader in readers.items()}
                first = next(iter(parts.values()))
                last = first is None
                count = 0 if first is None else first.shape[1]
                block = np.zeros((4, channels, count), np.float32)
                for index, slot in enumerate(self.slots):
                    for stem in slot.sources if not last else ():
                        block[index] += parts[stem]
                if stream is not None:
                    frames = stream.resample_chunk(block.reshape(4 * channels, -1).T, last=last)
                    block = np.ascontiguousarray(frames.T).reshape(4, channels, -1)
                if block.shape[-1]:
                    yield block
                if last:
                    return
        finally:
            for reader in readers.values():
                reader.close()


class _StemSpool:
    """One stem of a `StemFile`: float32 frames appended to a spool file."""

    def __init__(self, owner: StemFile, stem: str, spool: Path, channels: int) -> None:
        self.owner, self.stem, self.spool, self.channels = owner, stem, spool, channels
        self.path = owner.path
        self.frames = 0
        self._handle: BinaryIO | None = open(spool, "wb")  # closed in close/remove

    @property
    def clipped_samples(self) -> int:
        return self.owner.clipped.get(self.stem, 0)

    def write(self, block: np.ndarray) -> None:
        if self._handle is None:
            raise ValueError(f"write to a closed stem ({self.stem} of {self.path})")
        block = np.asarray(block, dtype=np.float32)
        self._handle.write(np.ascontiguousarray(block.T).tobytes())
        self.frames += block.shape[1]

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self.owner.stem_closed(self.stem)

    def abort(self) -> None:
        self.owner.abort()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        try:
            self.spool.unlink()
        except FileNotFoundError:
            pass

    def reader(self) -> Generator[np.ndarray, None, None]:
        """The spooled stem again, `(C, n)` blocks of `_BLOCK` frames."""
        with open(self.spool, "rb") as handle:
            while chunk := handle.read(_BLOCK * 4 * self.channels):
                yield np.frombuffer(chunk, np.float32).reshape(-1, self.channels).T


# -- encoding and muxing (PyAV) -------------------------------------------------------


class Mp4Encoder:
    """Five stereo tracks into one MP4 with FFmpeg's encoders and muxer (moov at the end).

    Each track's encoder runs in its own thread (PyAV releases the GIL while FFmpeg
    encodes), so AAC's five encoders use five cores; packets are muxed in track order
    by the calling thread, so the file does not depend on the threads' timing."""

    def __init__(self, path: Path, samplerate: int, codec: str, bit_depth: int = 16,
                 tracks: int = 5, clamp: bool = True) -> None:  # fmt: skip
        import av

        self.samplerate, self.codec, self.bit_depth, self.clamp = samplerate, codec, bit_depth, clamp
        self.clipped = [0] * tracks
        self.frames = 0
        self.packets = 0
        self.priming = 0
        # movie_timescale = the rate: the edit list trimming AAC's priming is sample-exact
        self._container = av.open(str(path), "w", format="mp4",
                                  options={"movie_timescale": str(samplerate)})  # fmt: skip
        self._streams: list[Any] = []
        self._pool = ThreadPoolExecutor(tracks, thread_name_prefix="stemsplit-mp4")
        for _ in range(tracks):
            stream: Any = self._container.add_stream(codec, rate=samplerate)
            stream.layout = "stereo"
            if codec == "aac":
                stream.bit_rate = AAC_BITRATE
            else:
                stream.format = "s16p" if bit_depth == 16 else "s32p"  # s32p: 24-bit ALAC
            self._streams.append(stream)

    def write(self, block: np.ndarray) -> None:
        """Append `[tracks, 2, n]` float32 frames."""
        encoded = list(self._pool.map(self._encode, range(len(self._streams)), block))
        for index, packets in enumerate(encoded):
            self._mux(index, packets)
        self.frames += block.shape[-1]

    def close(self) -> tuple[int, int]:
        """Flush and finish the file; (priming samples, samples encoded incl. priming)."""
        try:
            for index, stream in enumerate(self._streams):
                self._mux(index, stream.encode(None))
        finally:
            self._pool.shutdown()
            self._container.close()
        frame_size = 1024 if self.codec == "aac" else 0
        return self.priming, self.packets * frame_size or self.frames

    def _encode(self, index: int, audio: np.ndarray) -> list[Any]:
        """One track's block through its encoder (in a pool thread): its packets."""
        import av

        data, layout = self._samples(index, audio)
        frame = av.AudioFrame.from_ndarray(data, format=layout, layout="stereo")
        frame.sample_rate = self.samplerate
        frame.pts = self.frames
        return list(self._streams[index].encode(frame))

    def _samples(self, index: int, audio: np.ndarray) -> tuple[np.ndarray, str]:
        if self.codec == "aac":
            if self.clamp:
                self.clipped[index] += int(np.count_nonzero(np.abs(audio) > 1.0))
                audio = np.clip(audio, -1.0, 1.0)
            return np.ascontiguousarray(audio, np.float32), "fltp"
        scale = float(2 ** (self.bit_depth - 1))
        ints = np.rint(audio.astype(np.float64) * scale)
        self.clipped[index] += int(np.count_nonzero((ints < -scale) | (ints > scale - 1)))
        ints = np.clip(ints, -scale, scale - 1)
        if self.bit_depth == 16:
            return ints.astype(np.int16), "s16p"
        return ints.astype(np.int32) << 8, "s32p"  # 24 bits in the top of an int32

    def _mux(self, index: int, packets: Sequence[Any]) -> None:
        for packet in packets:
            if index == 0:
                self.packets += 1
                if packet.pts is not None and packet.pts < 0:
                    self.priming = max(self.priming, -int(packet.pts))
            self._container.mux(packet)


def add_itunsmpb(path: Path, priming: int, padding: int, length: int) -> None:
    """iTunes' gapless record: priming, padding and the true sample count (hex)."""
    from mutagen.mp4 import MP4, MP4FreeForm

    value = (f" 00000000 {priming:08X} {max(padding, 0):08X} {length:016X}"
             + " 00000000" * 8)  # fmt: skip
    audio: Any = MP4(str(path))
    if audio.tags is None:
        audio.add_tags()
    audio.tags["----:com.apple.iTunes:iTunSMPB"] = [MP4FreeForm(value.encode("ascii"))]
    audio.save()


# -- the stem box ---------------------------------------------------------------------


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int]]:
    """(type, offset, header size, total size) of each box in data[start:end]."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise ValueError(f"malformed MP4 box {kind!r} at {offset}")
        yield kind, offset, header, size
        offset += size


def add_movie_box(path: Path, kind: bytes, payload: bytes) -> None:
    """Append a `kind` box to `moov/udta` of the MP4 at `path`.

    FFmpeg writes `moov` after `mdat` (no faststart), so `moov` is the file's last box:
    growing it moves no media data, and the chunk offsets (`stco`/`co64`, absolute
    file positions into `mdat`) stay true. A file whose `moov` is not last is refused
    rather than rewritten with shifted offsets."""
    with open(path, "r+b") as handle:
        top = []
        position, end = 0, os.fstat(handle.fileno()).st_size
        while position + 8 <= end:
            handle.seek(position)
            head = handle.read(16)
            size, name = struct.unpack(">I4s", head[:8])
            if size == 1:
                size = struct.unpack(">Q", head[8:16])[0]
            elif size == 0:
                size = end - position
            top.append((name, position, size))
            position += max(size, 8)
        if not top or top[-1][0] != b"moov":
            raise ValueError("the MP4's moov box is not its last box; cannot add the stem box")
        _, offset, size = top[-1]
        handle.seek(offset)
        moov = handle.read(size)
        header = 16 if struct.unpack(">I", moov[:4])[0] == 1 else 8
        children = [(k, o, s) for k, o, _, s in _boxes(moov, header, len(moov))]
        box = _box(kind, payload)
        body = b""
        found = False
        for name, child, child_size in children:
            chunk = moov[child : child + child_size]
            if name == b"udta" and not found:
                found = True
                inner = 16 if struct.unpack(">I", chunk[:4])[0] == 1 else 8
                chunk = _box(b"udta", chunk[inner:] + box)
            body += chunk
        if not found:
            body += _box(b"udta", box)
        handle.seek(offset)
        handle.write(_box(b"moov", body))
        handle.truncate()


def writer_factory_for(
    track: Path, outputs: Mapping[str, Path], slots: Sequence[StemSlot], codec: str,
    bit_depth: Any, clip: str, tags: Tags | None,
) -> tuple[Callable[..., Any], dict[str, dict[str, Any]]]:  # fmt: skip
    """The pipeline's writer factory and per-stem options for one track's stem file."""
    path = next(iter(outputs.values()))
    stem_file = StemFile(path, track, list(outputs), slots, codec, bit_depth, clip, tags)
    return stem_file.open_stem, {stem: {"stem": stem} for stem in outputs}
