"""Audio through pipes: read an input from a non-seekable stream (stdin), write one stem
to one (stdout) as it comes.

Input (`read_stream`): the first bytes say what it is. WAV (RIFF/RF64, including
the unknown-length headers ffmpeg writes to pipes) is parsed here and read block by
block; FLAC, Ogg (Vorbis, Opus, FLAC), MP3 and anything else FFmpeg recognises go
through PyAV reading the stream as a file object (never seeking); raw PCM
(`f32le`/`s16le`, interleaved) needs its rate and channel count given. Blocks are
sanitised as `audio.reader` does (NaN/Inf and |x| > 256 -> 0).

Output (`StreamWriter`): a streaming WAV (sizes 0xFFFFFFFF, as ffmpeg writes to
pipes: readers take "until the end"), FLAC through PyAV (STREAMINFO without the
length, which a pipe cannot go back to fill in), or raw float32 little-endian
interleaved. Integer PCM is quantised as `audio.writer` does (round, clamp).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from stemsplit.errors import InputError, ReaderClosed, UndecodableAudio, UsageError

log = logging.getLogger(__name__)

BLOCK_FRAMES = 4096  # small: a pipe's consumer should hear output early
RAW_FORMATS: dict[str, np.dtype[Any]] = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
STREAM_FORMATS = ("wav", "flac", "raw")
_MAX_SAMPLE = 256.0
_UNKNOWN = 0xFFFFFFFF


@dataclass
class StreamInput:
    """What `read_stream` found: rate, channels, a description, and the blocks."""

    samplerate: int
    channels: int
    description: str
    blocks: Iterator[np.ndarray]  # (channels, n) float32


class _Prefixed:
    """A binary stream with bytes already read put back in front (no seeking)."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data, self.head = self.head + self.stream.read(), b""
            return data
        if self.head:
            data, self.head = self.head[:size], self.head[size:]
            if len(data) < size:
                data += _read_some(self.stream, size - len(data))
            return data
        return _read_some(self.stream, size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _read_some(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end (pipes return short reads)."""
    parts = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def read_stream(
    stream: BinaryIO,
    input_format: str | None = None,
    samplerate: int | None = None,
    channels: int | None = None,
    block_frames: int = BLOCK_FRAMES,
) -> StreamInput:
    """Open an audio stream (header read now: errors raise here; samples lazily)."""
    if input_format is not None:
        if input_format not in RAW_FORMATS or not samplerate or not channels:
            raise UsageError("raw input needs --input-format f32le|s16le, --input-rate and "
                             "--input-channels")  # fmt: skip
        dtype = RAW_FORMATS[input_format]
        blocks = _raw_blocks(stream, dtype, channels, block_frames)
        return StreamInput(samplerate, channels, f"raw {input_format}", _sanitised(blocks))
    head = _read_some(stream, 12)
    if not head:
        raise UndecodableAudio("stdin is empty: nothing to separate")
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return _open_wav(stream, block_frames)
    length = None
    if head[:3] == b"ID3" or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0):  # MP3
        tag = _id3_size(head) if head[:3] == b"ID3" else 0
        head += _read_some(stream, tag + 4096 - len(head))  # ID3, then the first frame
        length = mp3_samples(head[tag:])
    return _open_pyav(_Prefixed(head, stream), length)


def _id3_size(head: bytes) -> int:
    """Bytes of an ID3v2 tag (header included) at the start of `head`."""
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)  # (a footer)


def mp3_samples(frame: bytes) -> int | None:
    """The exact length of an MP3 from its first frame's Xing/Info and LAME tags (frames
    x samples per frame - encoder delay - padding), or None without them. FFmpeg trims
    the padding only where it can seek to the end; a pipe cannot, so the stream's length
    comes from here (the 514 extra samples of a 2 s LAME file)."""
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE0 != 0xE0:
        return None
    mpeg1, mono = (frame[1] >> 3) & 3 == 3, frame[3] >> 6 == 3
    at = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    if frame[at:at + 4] not in (b"Xing", b"Info") or len(frame) < at + 120:
        return None
    flags = struct.unpack(">I", frame[at + 4:at + 8])[0]
    if not flags & 1:
        return None
    frames = struct.unpack(">I", frame[at + 8:at + 12])[0]
    lame = at + 12 + (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    gap = frame[lame + 21:lame + 24]
    if frame[lame:lame + 4] not in (b"LAME", b"Lavc", b"Lavf") or len(gap) < 3:
        return None
    delay, padding = (gap[0] << 4) | (gap[1] >> 4), ((gap[1] & 0x0F) << 8) | gap[2]
    return frames * (1152 if mpeg1 else 576) - delay - padding


def _raw_blocks(stream: BinaryIO, dtype: np.dtype, channels: int, frames: int
                ) -> Iterator[np.ndarray]:  # fmt: skip
    frame_bytes = dtype.itemsize * channels
    rest = b""
    while True:
        data = _read_some(stream, frames * frame_bytes - len(rest))
        data, done = rest + data, len(data) == 0
        usable = len(data) - len(data) % frame_bytes
        if usable:
            yield _to_float(np.frombuffer(data[:usable], dtype=dtype), channels)
        rest = data[usable:]
        if done:
            if rest:
                log.warning("stdin ended inside a frame: %d trailing bytes dropped", len(rest))
            return


def _to_float(samples: np.ndarray, channels: int) -> np.ndarray:
    frames = samples.reshape(-1, channels).T
    if samples.dtype.kind == "f":
        return np.ascontiguousarray(frames, dtype=np.float32)
    scale = float(2 ** (8 * samples.dtype.itemsize - 1))
    return np.ascontiguousarray(frames, dtype=np.float32) / np.float32(scale)


def _open_wav(stream: BinaryIO, block_frames: int) -> StreamInput:
    """Walk the RIFF chunks up to `data` (sizes of 0 or 0xFFFFFFFF: until the end)."""
    fmt = None
    while True:
        header = _read_some(stream, 8)
        if len(header) < 8:
            raise UndecodableAudio("stdin: a WAV header without a data chunk")
        tag, size = header[:4], struct.unpack("<I", header[4:])[0]
        if tag == b"data":
            break
        if size == _UNKNOWN:
            raise UndecodableAudio(f"stdin: WAV chunk {tag!r} of unknown size")
        body = _read_some(stream, size + (size & 1))
        if tag == b"fmt ":
            fmt = body
    if fmt is None or len(fmt) < 16:
        raise UndecodableAudio("stdin: WAV without a fmt chunk")
    code, channels, rate, _, align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if code == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's code
        code = struct.unpack("<H", fmt[24:26])[0]
    kinds = {(1, 16): "<i2", (1, 24): "i24", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8",
             (1, 8): "u1"}  # fmt: skip
    kind = kinds.get((code, bits))
    if kind is None or not channels or not rate:
        raise UndecodableAudio(f"stdin: WAV format {code} with {bits} bits is not supported "
                               "(PCM 8/16/24/32 or float 32/64)")  # fmt: skip
    known = None if size in (0, _UNKNOWN) else size  # ffmpeg's pipe WAVs say 0xFFFFFFFF

    def blocks() -> Iterator[np.ndarray]:
        left = known
        while left is None or left > 0:
            want = block_frames * align if left is None else min(block_frames * align, left)
            data = _read_some(stream, want)
            usable = len(data) - len(data) % align
            if usable:
                yield _wav_samples(data[:usable], kind, channels)
            if left is not None:
                left -= len(data)
            if len(data) < want:
                return

    return StreamInput(rate, channels, f"WAV {bits}-bit {'float' if code == 3 else 'PCM'}",
                       _sanitised(blocks()))  # fmt: skip


def _wav_samples(data: bytes, kind: str, channels: int) -> np.ndarray:
    if kind == "i24":
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = (raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16) << 8 >> 8
        frames = value.reshape(-1, channels).T.astype(np.float32) / np.float32(1 << 23)
        return np.ascontiguousarray(frames)
    if kind == "u1":
        raw = np.frombuffer(data, np.uint8).astype(np.float32)
        return np.ascontiguousarray(((raw - 128) / 128).reshape(-1, channels).T)
    return _to_float(np.frombuffer(data, np.dtype(kind)), channels)


def _open_pyav(file: _Prefixed, length: int | None = None) -> StreamInput:
    """PyAV over the stream; `length` (an MP3's, from its tags) cuts the decoder's tail."""
    import av

    try:
        container = av.open(file, mode="r")
        stream = container.streams.audio[0]
    except (av.FFmpegError, IndexError, OSError, ValueError) as err:
        raise UndecodableAudio(f"stdin: not audio stemsplit can read ({err}); for raw PCM "
                               "give --input-format, --input-rate, --input-channels") from None
    rate = stream.rate or stream.codec_context.sample_rate
    channels = stream.codec_context.channels or len(stream.layout.channels)

    def blocks() -> Iterator[np.ndarray]:
        from stemsplit.audio.reader import _frame_array

        left = length if length is not None and container.format.name == "mp3" else None
        try:
            for frame in container.decode(stream):
                block = _frame_array(frame)
                if left is not None:
                    block, left = block[:, :left], max(0, left - block.shape[1])
                yield block
        except (av.FFmpegError, OSError, ValueError) as err:
            raise UndecodableAudio(f"cannot decode stdin: {err}") from err
        finally:
            container.close()

    return StreamInput(rate, channels, f"{container.format.name} {stream.codec_context.name}",
                       _sanitised(blocks()))  # fmt: skip


def _sanitised(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    warned = False
    for block in blocks:
        finite = np.abs(block) <= _MAX_SAMPLE
        if not finite.all():
            if not warned:
                log.warning("stdin contains NaN/Inf or absurd samples; replacing them with 0")
                warned = True
            block = np.where(finite, block, np.float32(0))
        yield block


def resample_array(audio: np.ndarray, in_rate: int, out_rate: int,
                   block_frames: int = 1 << 16) -> np.ndarray:
    """`(channels, n)` at `out_rate`, exactly `round(n * out_rate / in_rate)` frames,
    resampled as `audio.reader` resamples files (soxr HQ, streamed)."""
    import soxr

    channels, length = audio.shape
    resampler = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality="HQ")
    parts = []
    for start in range(0, length, block_frames):
        block = np.ascontiguousarray(audio[:, start : start + block_frames].T, np.float32)
        parts.append(resampler.resample_chunk(block))
    parts.append(resampler.resample_chunk(np.zeros((0, channels), np.float32), last=True))
    out = np.concatenate(parts, axis=0).T
    total = round(length * out_rate / in_rate)
    if out.shape[1] < total:
        out = np.concatenate([out, np.zeros((channels, total - out.shape[1]), np.float32)], 1)
    return np.ascontiguousarray(out[:, :total])


class _WholeWrites:
    """A binary stream whose `write` writes everything or raises: a pipe's buffered
    writer returns a short count, without an error, when the reader has gone
    mid-write (Python's BufferedWriter), so a lost tail would pass unnoticed."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        while view:
            written = self.stream.write(view)
            if not written:
                raise BrokenPipeError("stdout took no more bytes")
            view = view[written:]
        return len(memoryview(data).cast("B"))

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # seek, tell... as the stream has them
        return getattr(self.stream, name)


class StreamWriter:
    """One stem to a binary stream as blocks come: `wav`, `flac` or `raw` (f32le).

    The same interface as `audio.writer.StemWriter` (write, close, abort,
    clipped_samples), so the pipeline writes to a pipe as it writes to a file.
    """

    def __init__(self, stream: BinaryIO, samplerate: int, channels: int, format: str = "wav",
                 bit_depth: int | str | None = None, clip: str = "clamp", **_: object) -> None:
        if format not in STREAM_FORMATS:
            raise UsageError(f"-o - writes {', '.join(STREAM_FORMATS)}, not {format}")
        self.stream = _WholeWrites(stream)
        self.samplerate = samplerate
        self.channels = channels
        self.format = format
        self.bits = 32 if format == "raw" or bit_depth == "float32" else int(bit_depth or 16)
        self.clip = clip
        self.clipped_samples = 0
        self.frames_written = 0
        self._av: Any = None  # PyAV's output container, for FLAC
        if format == "wav":
            self._put(_wav_header(samplerate, channels, self.bits))
        elif format == "flac":
            self._open_flac()

    def _put(self, data: bytes) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            raise ReaderClosed("stdout closed by its reader (broken pipe)") from None

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if not block.shape[-1]:
            return
        self.frames_written += block.shape[-1]
        if self.format == "flac":
            self._encode_flac(block)
            return
        if self.bits == 32 and self.format in ("raw", "wav"):
            if self.clip == "clamp":
                over = np.abs(block) > 1
                if over.any():
                    self.clipped_samples += int(over.sum())
                    block = np.clip(block, -1, 1)
            self._put(np.ascontiguousarray(block.T, dtype="<f4").tobytes())
            return
        self._put(_pcm_bytes(block, self.bits, self))

    def _open_flac(self) -> None:
        import av

        self._av = av.open(self.stream, mode="w", format="flac")
        codec = self._av.add_stream("flac", rate=self.samplerate)
        codec.layout = "stereo" if self.channels == 2 else "mono"
        codec.format = "s16" if self.bits == 16 else "s32"
        self._av_stream = codec

    def _encode_flac(self, block: np.ndarray) -> None:
        import av

        bits = 16 if self.bits == 16 else 24
        scale = float(1 << (bits - 1))
        ints = np.clip(np.round(block * scale), -scale, scale - 1)
        self.clipped_samples += int(np.count_nonzero(np.abs(block * scale) > scale))
        if bits == 16:
            data, fmt = ints.astype("<i2"), "s16"
        else:
            data, fmt = (ints.astype("<i4") << 8), "s32"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T.reshape(1, -1)),
                                           format=fmt,
                                           layout="stereo" if self.channels == 2 else "mono")
        frame.sample_rate = self.samplerate
        try:
            for packet in self._av_stream.encode(frame):
                self._av.mux(packet)
            self.stream.flush()
        except BrokenPipeError:
            raise ReaderClosed("stdout closed by its reader (broken pipe)") from None

    def close(self) -> None:
        if self._av is not None:
            for packet in self._av_stream.encode(None):
                self._av.mux(packet)
            self._av.close()
            self._av = None
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise ReaderClosed("stdout closed by its reader (broken pipe)") from None
        if self.clipped_samples:
            log.warning("%d samples clipped to full scale on stdout", self.clipped_samples)

    def abort(self) -> None:
        """A pipe cannot take back what it sent: stop (the reader sees a short stream)."""
        if self._av is not None:
            try:
                self._av.close()
            except Exception:  # the run already failed; its error is reported
                pass
            self._av = None


def _wav_header(rate: int, channels: int, bits: int) -> bytes:
    """RIFF/WAVE with unknown sizes (0xFFFFFFFF), as ffmpeg writes WAV to a pipe."""
    code = 3 if bits == 32 else 1
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * align, align, bits)
    return (b"RIFF" + struct.pack("<I", _UNKNOWN) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", _UNKNOWN))


def _pcm_bytes(block: np.ndarray, bits: int, writer: StreamWriter) -> bytes:
    scale = float(1 << (bits - 1))
    scaled = np.round(block.T.astype(np.float64) * scale)
    over = (scaled < -scale) | (scaled > scale - 1)
    if over.any():
        writer.clipped_samples += int(over.sum())
        scaled = np.clip(scaled, -scale, scale - 1)
    ints = scaled.astype("<i4")
    if bits == 16:
        return ints.astype("<i2").tobytes()
    if bits == 24:
        raw = ints.reshape(-1, 1).view(np.uint8)[:, :3]
        return np.ascontiguousarray(raw).tobytes()
    raise InputError(f"unsupported bit depth {bits}")
