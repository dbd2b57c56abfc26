"""Streaming audio input: decode any file in blocks, fix channels, resample, exact length.

Decoding tries libsndfile (soundfile: WAV, FLAC, OGG, Opus, MP3, AIFF, ...) first and
PyAV/FFmpeg (M4A/AAC, WMA, video containers: first audio stream) second. Blocks are
processed as they come: NaN/Inf and |x| > 256 -> 0, channel mapping, soxr's streaming resampler, then
re-cut into blocks of `block_frames`. The whole file is never held in memory.

Length contract: a file of `frames` input frames at rate `r` yields exactly
`round(frames * samplerate / r)` frames, so stems line up with the input whatever the rate.

Channel policy: mono is duplicated; more channels than asked for are downmixed with
ITU-R BS.775-style weights (see `downmix_matrix`), with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stemsplit.audio.remote import AudioInput, RemoteFile, binary, local_or_remote, opened
from stemsplit.errors import InputError, UndecodableAudio, UsageError

if TYPE_CHECKING:
    import av

logger = logging.getLogger(__name__)

# Frames held back before yielding so the final length fix (soxr may be a frame off)
# never has to touch a block already yielded.
_TAIL_HOLD = 64
# Float files may exceed full scale, but not by 48 dB: beyond this a sample is garbage
# (found by fuzzing: 1e38 overflows the downmix and resampler into Inf/NaN).
_MAX_SAMPLE = 256.0
_CENTRE = _SURROUND = 0.7071067811865476  # -3 dB, ITU-R BS.775 downmix coefficients

# Per channel count, (left, right) weights in WAV/SMPTE order, as FFmpeg also orders them.
_ITU_WEIGHTS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    3: ((1, 0, _CENTRE), (0, 1, _CENTRE)),  # L R C
    4: ((1, 0, _SURROUND, 0), (0, 1, 0, _SURROUND)),  # FL FR BL BR (quad)
    5: ((1, 0, _CENTRE, _SURROUND, 0), (0, 1, _CENTRE, 0, _SURROUND)),  # FL FR FC BL BR
    6: ((1, 0, _CENTRE, 0, _SURROUND, 0), (0, 1, _CENTRE, 0, 0, _SURROUND)),  # 5.1, LFE dropped
    8: (
        (1, 0, _CENTRE, 0, _SURROUND, 0, _SURROUND, 0),  # 7.1: FL FR FC LFE BL BR SL SR
        (0, 1, _CENTRE, 0, 0, _SURROUND, 0, _SURROUND),
    ),
}


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, without decoding it.

    `frames` is exact for libsndfile formats (an estimate for MP3), an estimate from the
    container for PyAV ones, or None when the container does not say; `duration` follows.
    """

    path: Path | RemoteFile  # a local file, or an object read as a stream (`audio.remote`)
    samplerate: int
    channels: int
    frames: int | None
    duration: float | None
    container: str
    codec: str
    backend: str = "soundfile"  # which decoder reads it: "soundfile" or "pyav"


def probe(path: AudioInput) -> AudioInfo:
    """Rate, channels, length and format of `path`; InputError/UndecodableAudio if unusable."""
    path = _check_path(path)
    import soundfile

    try:
        with _native_stderr_hushed(), opened(path) as source:
            sf_info = soundfile.info(source)
    except (soundfile.SoundFileError, RuntimeError) as err:
        return _probe_pyav(path, sf_reason=str(err))
    frames = sf_info.frames
    if sf_info.format == "WAV":
        _warn_if_short_wav(path, frames, sf_info.samplerate)
    return AudioInfo(path, sf_info.samplerate, sf_info.channels, frames,
                     frames / sf_info.samplerate, sf_info.format, sf_info.subtype)


def read_blocks(
    path: AudioInput,
    samplerate: int | None = None,
    channels: int = 2,
    block_frames: int = 2**16,
    quality: str = "HQ",
    on_decoded: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Blocks of float32 C-contiguous `(channels, block_frames)` arrays (the last shorter).

    `samplerate=None` keeps the file's rate; `quality` is soxr's ("HQ" or "VHQ").
    The file is opened and checked now (errors raise here); decoding happens lazily.
    `on_decoded(frames)` is called once decoding ends with the frames decoded at the
    file's own rate: the true length, where `probe` only has a container's estimate.
    """
    if channels not in (1, 2):
        raise UsageError(f"channels must be 1 or 2, not {channels}")
    if samplerate is not None and samplerate <= 0:
        raise UsageError(f"sample rate must be positive, not {samplerate}")
    if block_frames < 1:
        raise UsageError(f"block_frames must be positive, not {block_frames}")
    info = probe(path)
    return _stream(info, samplerate or info.samplerate, channels, block_frames, quality,
                   on_decoded)


def read_all(
    path: AudioInput, samplerate: int | None = None, channels: int = 2
) -> np.ndarray:
    """The whole file as one `(channels, frames)` float32 array: for tests and short clips only."""
    blocks = list(read_blocks(path, samplerate, channels))
    if not blocks:
        return np.zeros((channels, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(blocks, axis=1))


def downmix_matrix(in_channels: int, out_channels: int) -> np.ndarray:
    """`(out_channels, in_channels)` weights mapping many channels onto fewer.

    Known layouts (3, 4, 5, 5.1, 7.1 in WAV/SMPTE order) use ITU-R BS.775 weights: front
    channels 1, centre and surrounds -3 dB, LFE dropped. Other counts send even channels
    left and odd ones right. Each row is normalised to sum to 1 so a full-scale signal on
    every channel stays within [-1, 1] (as FFmpeg's normalised downmix does). Mono output
    is the mean of the stereo downmix.
    """
    if in_channels in _ITU_WEIGHTS:
        stereo = np.array(_ITU_WEIGHTS[in_channels], dtype=np.float64)
    else:
        stereo = np.zeros((2, in_channels))
        stereo[0, 0::2] = 1.0
        stereo[1, 1::2] = 1.0
    stereo /= stereo.sum(axis=1, keepdims=True)
    if out_channels == 1:
        return stereo.mean(axis=0, keepdims=True)
    return stereo


def _check_path(path: AudioInput) -> Path | RemoteFile:
    """Reject what is plainly not an audio file before any decoder sees it."""
    path = local_or_remote(path)
    if isinstance(path, RemoteFile):
        if not path.size():
            raise UndecodableAudio(f"{path} is empty (0 bytes); it holds no audio")
        return path
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UndecodableAudio(f"{path} is a folder, not an audio file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied; make the file readable")
    if path.stat().st_size == 0:
        raise UndecodableAudio(f"{path} is empty (0 bytes); it holds no audio")
    return path


def _stream(
    info: AudioInfo,
    samplerate: int,
    channels: int,
    block_frames: int,
    quality: str,
    on_decoded: Callable[[int], None] | None = None,
) -> Iterator[np.ndarray]:
    """Decode -> sanitise -> map channels -> resample -> exact-size blocks."""
    resampler = None
    if samplerate != info.samplerate:
        import soxr

        mixed = min(channels, info.channels)
        resampler = soxr.ResampleStream(
            info.samplerate, samplerate, mixed, dtype="float32", quality=quality
        )
    matrix = None
    if info.channels > channels:
        matrix = downmix_matrix(info.channels, channels).astype(np.float32)
        logger.warning(
            "%s has %d channels; downmixing to %d (ITU-R BS.775 weights)",
            info.path, info.channels, channels,
        )
    buffer = _Rebuffer(channels, block_frames, _TAIL_HOLD if resampler else 0)
    frames_in = 0
    bad_samples = 0
    if info.backend == "soundfile":
        decoded = _decode_soundfile(info.path, hush=info.container == "MP3")
    else:
        decoded = _decode_pyav(info.path)
    for raw in decoded:
        if raw.shape[0] != info.channels:
            raise UndecodableAudio(f"{info.path}: the channel count changes mid-stream")
        frames_in += raw.shape[1]
        finite = np.abs(raw) <= _MAX_SAMPLE  # False for NaN and Inf too
        if not finite.all():
            if bad_samples == 0:
                logger.warning("%s contains NaN/Inf or absurd (beyond ±%g) samples; replacing "
                               "them with 0", info.path, _MAX_SAMPLE)
            bad_samples += int(raw.size - np.count_nonzero(finite))
            raw = np.where(finite, raw, np.float32(0))
        block = raw if matrix is None else matrix @ raw
        if resampler is not None:
            block = resampler.resample_chunk(np.ascontiguousarray(block.T)).T
        yield from buffer.push(_widen(block, channels))
    _check_complete(info, frames_in)
    if on_decoded is not None:
        on_decoded(frames_in)
    if resampler is not None:
        tail = resampler.resample_chunk(
            np.zeros((0, min(channels, info.channels)), dtype=np.float32), last=True
        )
        buffer.push_nowait(_widen(tail.T, channels))
    if bad_samples:
        logger.debug("%s: %d NaN/Inf samples replaced", info.path, bad_samples)
    yield from buffer.finish(round(frames_in * samplerate / info.samplerate))


def _widen(block: np.ndarray, channels: int) -> np.ndarray:
    """Duplicate mono to `channels`; others pass through."""
    if block.shape[0] == channels:
        return block
    return np.repeat(block[:1], channels, axis=0)


class _Rebuffer:
    """Re-cut blocks of any size into `block_frames`, holding back a short tail."""

    def __init__(self, channels: int, block_frames: int, hold: int) -> None:
        self.channels = channels
        self.block_frames = block_frames
        self.hold = hold
        self.pending: list[np.ndarray] = []
        self.count = 0
        self.emitted = 0

    def push_nowait(self, block: np.ndarray) -> None:
        if block.shape[1]:
            self.pending.append(block)
            self.count += block.shape[1]

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        self.push_nowait(block)
        while self.count >= self.block_frames + self.hold:
            yield self._take(self.block_frames)

    def finish(self, total: int) -> Iterator[np.ndarray]:
        """Trim or zero-pad what is left so exactly `total` frames come out in all."""
        wanted = total - self.emitted
        if wanted < 0:  # only reachable if more than `hold` surplus frames appeared
            raise RuntimeError(f"resampler overshot by {-wanted} frames")
        if wanted > self.count:
            self.push_nowait(np.zeros((self.channels, wanted - self.count), dtype=np.float32))
        while wanted > 0:
            take = min(self.block_frames, wanted)
            wanted -= take
            yield self._take(take)
        self.pending, self.count = [], 0

    def _take(self, frames: int) -> np.ndarray:
        joined = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending, 1)
        out = np.ascontiguousarray(joined[:, :frames], dtype=np.float32)
        rest = joined[:, frames:]
        self.pending = [rest] if rest.shape[1] else []
        self.count -= frames
        self.emitted += frames
        return out


def _probe_pyav(path: Path | RemoteFile, sf_reason: str) -> AudioInfo:
    """Probe the first audio stream with FFmpeg; the length is the container's estimate."""
    import av

    try:
        with opened(path) as source, av.open(source) as container:
            if not container.streams.audio:
                raise UndecodableAudio(f"{path} has no audio stream; is it an audio file?")
            stream = container.streams.audio[0]
            context = stream.codec_context
            rate = stream.rate or context.sample_rate
            channels = context.channels
            if stream.duration and stream.time_base:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration:
                seconds = container.duration / av.time_base
            else:
                seconds = None
            name = container.format.name
            codec = context.name
    except (av.FFmpegError, OSError, ValueError, AttributeError) as err:
        # AttributeError: PyAV's stream has no `rate` when FFmpeg knows no codec for it
        # (found by fuzzing: a WAV whose format tag is 0)
        reason = getattr(err, "strerror", None) or sf_reason or str(err)
        raise UndecodableAudio(
            f"cannot decode {path}: {_one_line(reason)} (not audio, or a damaged file)"
        ) from err
    if not rate or not channels:
        raise UndecodableAudio(f"{path}: audio stream without a sample rate or channels")
    frames = round(seconds * rate) if seconds else None
    return AudioInfo(path, rate, channels, frames, seconds, name, codec, backend="pyav")


def _decode_soundfile(
    path: Path | RemoteFile, block_frames: int = 2**16, hush: bool = False
) -> Iterator[np.ndarray]:
    """`(channels, n)` float32 views straight from libsndfile (`hush`: see below)."""
    import soundfile

    quiet = _native_stderr_hushed if hush else contextlib.nullcontext
    try:
        with opened(path) as source:
            with quiet():
                handle = soundfile.SoundFile(source)
            with handle:
                while True:
                    with quiet():
                        data = handle.read(block_frames, dtype="float32", always_2d=True)
                    if not len(data):
                        return
                    yield data.T
    except (soundfile.SoundFileError, RuntimeError) as err:
        raise UndecodableAudio(
            f"cannot decode {path}: {_one_line(str(err))} (the file is truncated or damaged)"
        ) from err


@contextlib.contextmanager
def _native_stderr_hushed() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the length of one decoder call.

    libmpg123 (inside libsndfile) prints resync notes and Xing warnings straight to
    fd 2, bypassing Python: a damaged MP3 would print lines beside our one-line error.
    Kept as they are with debug logging on, where they may help.
    """
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _warn_if_short_wav(path: Path | RemoteFile, frames: int, samplerate: int) -> None:
    """Warn when a WAV's header promises more data than the file holds.

    libsndfile reads the frames that are there (right for a recording cut short, and
    it never allocates for a header claiming hours); the user should still know.
    """
    declared = _wav_data_bytes(path)
    if declared is None or frames <= 0:
        return
    size, offset, file_size = declared
    available = file_size - offset
    if size in (0, 0xFFFFFFFF) or size <= available:  # 0 / -1: written by a stream
        return
    if isinstance(path, RemoteFile):
        key = (str(path), file_size, 0)
    else:
        key = (str(path.resolve()), file_size, path.stat().st_mtime_ns)
    if key in _warned_short:  # probed again for each model rate: say it once
        return
    _warned_short.add(key)
    held = frames / samplerate
    logger.warning(
        "%s: the header promises %.1f s but the file holds %.1f s (truncated?); "
        "separating what is there", path, held * size / max(available, 1), held,
    )


_warned_short: set[tuple[str, int, int]] = set()


def _wav_data_bytes(path: Path | RemoteFile) -> tuple[int, int, int] | None:
    """(size the `data` chunk declares, its offset, the file's size) of a RIFF WAV, or None."""
    try:
        with binary(path) as handle:
            if handle.read(12)[8:12] != b"WAVE":
                return None
            while len(header := handle.read(8)) == 8:
                chunk, size = struct.unpack("<4sI", header)
                if chunk == b"data":
                    return size, handle.tell(), handle.seek(0, os.SEEK_END)
                handle.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def _decode_pyav(path: Path | RemoteFile) -> Iterator[np.ndarray]:
    """`(channels, n)` float32 arrays from the first audio stream, one per decoded frame."""
    import av

    try:
        with opened(path) as source, av.open(source) as container:
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            for frame in container.decode(stream):
                if frame.sample_rate != rate:
                    raise UndecodableAudio(f"{path}: the sample rate changes mid-stream")
                yield _frame_array(frame)
    except (av.FFmpegError, OSError, ValueError, AttributeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UndecodableAudio(f"cannot decode {path}: {_one_line(reason)}") from err


def _frame_array(frame: av.AudioFrame) -> np.ndarray:
    """An av.AudioFrame as float32 `(channels, n)`, whatever its sample format."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    return array.astype(np.float32) / float(2 ** (8 * array.dtype.itemsize - 1))


def _check_complete(info: AudioInfo, frames: int) -> None:
    """Raise when the decoder stopped well before the length the header promised."""
    if info.frames is None or frames >= info.frames:
        return
    estimated = info.backend == "pyav" or info.container == "MP3"
    # Estimated lengths (container durations, MP3 without a Xing header) may be a little
    # long; a shortfall beyond half a second or 1 % means the data ends early.
    slack = max(info.samplerate // 2, info.frames // 100) if estimated else 0
    if info.frames - frames > slack and info.container == "MP3":
        # MP3 frames decode independently, as PCM WAV samples do: a file cut short is
        # separated as far as it goes (like a short WAV), and the user told.
        logger.warning("%s ends after %.1f of the %.1f s its header promises (truncated?); "
                       "separating what is there", info.path, frames / info.samplerate,
                       info.frames / info.samplerate)
        return
    if info.frames - frames > slack:
        raise UndecodableAudio(
            f"{info.path} ends after {frames} of {info.frames} frames; "
            "the file is truncated or damaged"
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())
