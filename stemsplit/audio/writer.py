"""Streaming stem output: encode blocks, apply the clip policy, publish the file atomically.

A `StemWriter` writes to a hidden temporary name beside the target
(`.{name}.partial-{pid}`, matched by `PARTIAL_GLOB`) and `os.replace`s it onto the target
only in `close()`, so an interrupted or failed run never leaves a file that looks finished.

Clip policies (`clip=`):
- "clamp" (default): values outside what the format holds are clamped and counted in
  `clipped_samples`; `close()` logs a warning when any were. Integer PCM holds
  [-1, 1 - 1 LSB]; float32 WAV and the lossy encoders' float input hold [-1, 1].
- "rescale": the float32 stream is spooled to a temporary raw file beside the target
  (`.{name}.partial-{pid}.f32`); at `close()`, if its peak exceeds 1 the whole stem is
  scaled by 1/peak (`gain`), then encoded. Costs one extra pass over the stem on disk.
- "none": values are written as they are where the format can hold them (float32 WAV,
  the float input of ogg/opus/mp3 encoders); integer PCM still has to be clamped, which is
  counted but not warned about.

`tags=` (`audio.tags.Tags`): the input's tags and cover, written with mutagen into the
finished temporary file before the rename, so a published file has them already.

Integer PCM is quantised here, not by libsndfile: it scales float to int by 0x7FFF, and
reads back dividing by 0x8000, a 1-LSB gain error; we round `x * 2**(bits-1)` and clip.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import soundfile

from stemsplit.atomic import PARTIAL_MARKER, partial_path
from stemsplit.audio.formats import BitDepth, check_clip, check_mp3_bitrate, resolve_output
from stemsplit.errors import OutputError, describe_os_error

if TYPE_CHECKING:
    from typing_extensions import Self

    from stemsplit.audio.tags import Tags

logger = logging.getLogger(__name__)

PARTIAL_GLOB = f".*{PARTIAL_MARKER}*"  # temporary and spool files; the batch code cleans these
_SPOOL_BLOCK = 2**16

# libsndfile 1.2.2 (mpeg_l3_encoder_set_quality): in CBR mode a compression level c maps to
# int(hi - c * (hi - lo)) kbps, with (lo, hi) the MPEG version's range by sample rate.
_MP3_RANGES = ((32000, 32, 320), (16000, 8, 160), (0, 8, 64))


def mp3_compression_level(bitrate_kbps: int, samplerate: int) -> float:
    """The libsndfile compression level that makes LAME encode CBR at `bitrate_kbps`.

    Bitrates outside the MPEG version's range (e.g. above 160 kbps at 22.05 kHz) are
    clamped to it. LAME then snaps to the nearest standard bitrate.
    """
    low, high = next((lo, hi) for floor, lo, hi in _MP3_RANGES if samplerate >= floor)
    kbps = min(max(bitrate_kbps, low), high)
    # +0.5 kbps so libsndfile's truncation of the double lands on kbps, not kbps - 1.
    return min(max((high - kbps - 0.5) / (high - low), 0.0), 1.0)


class StemWriter:
    """Write one stem file block by block; a context manager that aborts on exceptions."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        samplerate: int,
        channels: int,
        format: str = "wav",
        bit_depth: BitDepth | None = None,
        mp3_bitrate: int = 320,
        clip: str = "clamp",
        tags: Tags | None = None,
    ) -> None:
        self.format, self.bit_depth = resolve_output(format, bit_depth)
        check_clip(clip)
        check_mp3_bitrate(mp3_bitrate)
        self.path = Path(path)
        self.samplerate = samplerate
        self.channels = channels
        self.clip = clip
        self.mp3_bitrate = mp3_bitrate
        self.tags = tags  # written into the finished file before it is renamed
        self.clipped_samples = 0
        self.gain = 1.0  # the rescale factor applied at close ("rescale" only)
        self.frames_written = 0
        # Opus (libopus) encodes 8/12/16/24/48 kHz only: resample to 48 kHz here.
        self.file_samplerate = self.format.fixed_samplerate or samplerate
        self._resampler = None
        if self.file_samplerate != samplerate:
            import soxr

            self._resampler = soxr.ResampleStream(
                samplerate, self.file_samplerate, channels, dtype="float32", quality="HQ"
            )
        self._frames_in = 0
        self._peak = 0.0
        self._temp = partial_path(self.path)
        self._spool_path = self._temp.with_name(self._temp.name + ".f32")
        self._file: soundfile.SoundFile | None = None
        self._spool: BinaryIO | None = None  # the float32 spool of clip="rescale"
        self._closed = False
        self._guard(self._open)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, block: np.ndarray) -> None:
        """Append a `(channels, n)` block (float32; other float dtypes are converted)."""
        if self._closed:
            raise ValueError(f"write to a closed StemWriter ({self.path})")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, n) block, got {block.shape}")
        if block.shape[1] == 0:
            return
        if self.clip == "rescale":
            self._peak = max(self._peak, float(np.max(np.abs(block))))
            assert self._spool is not None  # _open made it (clip="rescale"), open until close
            self._guard(self._spool.write, np.ascontiguousarray(block.T).tobytes())
        else:
            self._guard(self._encode, block, False)

    def close(self) -> None:
        """Finish encoding and move the file onto `path`; a no-op once closed."""
        if self._closed:
            return
        self._guard(self._finish)
        self._closed = True
        if self.clipped_samples and self.clip == "clamp":
            logger.warning(
                "%s: %d samples clipped; use --clip rescale to scale the stem instead",
                self.path, self.clipped_samples,
            )

    def abort(self) -> None:
        """Drop everything written so far; nothing is left at `path` or beside it."""
        self._closed = True
        for handle in (self._file, self._spool):
            if handle is not None:
                with contextlib.suppress(Exception):  # best effort: the file is deleted next
                    handle.close()
        self._file = self._spool = None
        for leftover in (self._temp, self._spool_path):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.warning("could not remove %s: %s", leftover, err)

    # -- internals ---------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder")
        options = {}
        if self.format.name == "mp3":
            options = {
                "compression_level": mp3_compression_level(self.mp3_bitrate, self.samplerate),
                "bitrate_mode": "CONSTANT",
            }
        self._file = soundfile.SoundFile(
            str(self._temp), "w", self.file_samplerate, self.channels,
            subtype=self.format.subtype(self.bit_depth), format=self.format.container, **options,
        )
        if self.clip == "rescale":
            self._spool = open(self._spool_path, "wb")  # closed in _finish/abort

    def _finish(self) -> None:
        if self.clip == "rescale":
            assert self._spool is not None  # _open made it; abort() marks the writer closed
            self._spool.close()
            self._spool = None
            self.gain = 1.0 / self._peak if self._peak > 1.0 else 1.0
            self._encode_spool()
            self._spool_path.unlink()
        if self._resampler is not None:
            self._encode(np.zeros((self.channels, 0), dtype=np.float32), last=True)
        assert self._file is not None  # _open made it; abort() marks the writer closed
        self._file.close()
        self._file = None
        if self.tags:
            from stemsplit.audio.tags import write_tags

            write_tags(self._temp, self.tags, self.format.name)
        os.replace(self._temp, self.path)

    def _encode_spool(self) -> None:
        """Read the spooled float32 frames back in blocks, scale by `gain` and encode."""
        frame_bytes = 4 * self.channels
        with open(self._spool_path, "rb") as spool:
            while chunk := spool.read(_SPOOL_BLOCK * frame_bytes):
                frames = np.frombuffer(chunk, dtype=np.float32).reshape(-1, self.channels)
                self._encode(frames.T * np.float32(self.gain), last=False)

    def _encode(self, block: np.ndarray, last: bool) -> None:
        """Resample if needed, apply the clip policy, quantise and hand to libsndfile."""
        self._frames_in += block.shape[1]
        frames = np.ascontiguousarray(block.T)  # (n, channels), as libsndfile wants
        if self._resampler is not None:
            frames = self._resampler.resample_chunk(frames, last=last)
            if last:  # make the length exactly round(n * 48000 / rate), like the reader
                target = round(self._frames_in * self.file_samplerate / self.samplerate)
                frames = _fit(frames, target - self.frames_written)
        if not len(frames):
            return
        quiet = self.clip == "rescale"  # only rounding or opus resampling overshoot exceeds 1
        if self.bit_depth in (16, 24):
            scale = float(2 ** (self.bit_depth - 1))
            ints = np.rint(frames.astype(np.float64) * scale)
            low, high = -scale, scale - 1
            if not quiet:
                self.clipped_samples += int(np.count_nonzero((ints < low) | (ints > high)))
            ints = np.clip(ints, low, high)
            if self.bit_depth == 16:
                data = ints.astype(np.int16)
            else:  # libsndfile keeps the top 24 bits of an int32
                data = ints.astype(np.int32) << 8
        else:
            data = frames
            if self.clip != "none":
                outside = np.abs(frames) > 1.0
                if not quiet:
                    self.clipped_samples += int(np.count_nonzero(outside))
                data = np.clip(frames, -1.0, 1.0) if outside.any() else frames
        assert self._file is not None  # open from _open until _finish/abort
        self._file.write(data)
        self.frames_written += len(data)

    def _system_error_reason(self) -> str:
        """libsndfile reports failed writes as "System error": name the likely cause."""
        free = _free_bytes(self.path.parent)
        if free is not None and free < 1 << 20:
            return "no space left on the device; free some space or choose another --out"
        try:
            import resource

            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        except (ImportError, OSError, ValueError):
            limit = None
        if limit not in (None, getattr(resource, "RLIM_INFINITY", None)):
            return (f"file too large for the file size limit ({limit} bytes, ulimit -f); "
                    "raise it or choose another --out")
        return ("system error while writing (disk full or a file size limit?); "
                "free some space or choose another --out")

    def _guard(self, action: Callable[..., object], *args: object) -> None:
        """Run `action`; on OS/libsndfile errors remove the temporaries, raise OutputError."""
        try:
            action(*args)
        except (OSError, soundfile.SoundFileError, RuntimeError) as err:
            self.abort()
            if isinstance(err, OSError) and err.errno is not None:
                reason = describe_os_error(err, with_path=False)
            else:
                reason = " ".join(str(err).split())
            if reason.rstrip(".") == "System error":  # libsndfile hides the errno
                reason = self._system_error_reason()
            raise OutputError(f"cannot write {self.path}: {reason}") from err


def _free_bytes(folder: Path) -> int | None:
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


def _fit(frames: np.ndarray, wanted: int) -> np.ndarray:
    """Trim or zero-pad `(n, channels)` frames to `wanted` rows."""
    wanted = max(wanted, 0)
    if len(frames) >= wanted:
        return frames[:wanted]
    pad = np.zeros((wanted - len(frames), frames.shape[1]), dtype=frames.dtype)
    return np.concatenate([frames, pad])
