"""Independent readers of NI Stems files for the tests: raw MP4 boxes, PyAV decodes,
ffprobe. None of them goes through stemsplit's own writer or reader code."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np

CONTAINERS = {b"moov", b"trak", b"udta", b"mdia", b"minf", b"stbl", b"edts"}


def boxes(data: bytes, start: int = 0, end: int | None = None, prefix: str = ""
          ) -> dict[str, list[tuple[int, int]]]:  # fmt: skip
    """Every box by path ("moov/udta/stem") -> [(payload offset, payload size)]."""
    end = len(data) if end is None else end
    found: dict[str, list[tuple[int, int]]] = {}
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8:offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        assert size >= header and offset + size <= end, f"bad box {kind!r} at {offset}"
        path = f"{prefix}{kind.decode('latin-1')}"
        found.setdefault(path, []).append((offset + header, size - header))
        if kind in CONTAINERS:
            for key, value in boxes(data, offset + header, offset + size, path + "/").items():
                found.setdefault(key, []).extend(value)
        offset += size
    return found


def stem_box(path: Path) -> dict:
    """The JSON of `moov/udta/stem`, parsed from the file's bytes."""
    data = path.read_bytes()
    (offset, size), = boxes(data)["moov/udta/stem"]
    return json.loads(data[offset:offset + size].decode("utf-8"))


def track_flags(path: Path) -> list[int]:
    """Each track's tkhd flags (1 enabled, 2 in movie)."""
    data = path.read_bytes()
    return [int.from_bytes(data[o + 1:o + 4], "big") for o, _ in boxes(data)["moov/trak/tkhd"]]


def decode_tracks(path: Path) -> list[tuple[np.ndarray, int, int, str]]:
    """Per audio track: (float64 `(2, n)` samples as FFmpeg decodes them, the container's
    duration in samples, the rate, the codec)."""
    import av

    tracks = []
    with av.open(str(path)) as container:
        count = len(container.streams.audio)
    for index in range(count):
        with av.open(str(path)) as container:
            stream = container.streams.audio[index]
            frames = [f.to_ndarray() for f in container.decode(stream)]
            duration = int(stream.duration * stream.time_base * stream.rate)
            rate, codec = stream.rate, stream.codec_context.name
        samples = np.concatenate(frames, axis=1)
        if samples.dtype == np.int16:
            samples = samples / 2.0**15
        elif samples.dtype == np.int32:
            samples = samples / 2.0**31
        tracks.append((samples.astype(np.float64), duration, rate, codec))
    return tracks


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    reference = np.asarray(reference, np.float64)
    error = np.sum((np.asarray(estimate, np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(error, 1e-30)))


def ffprobe_audio(path: Path) -> list[dict] | None:
    """ffprobe's audio streams (codec, rate, channels, duration_ts), or None without it."""
    if shutil.which("ffprobe") is None:
        return None
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a", "-show_entries",
                          "stream=codec_name,sample_rate,channels,duration_ts", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout)["streams"]


def png_cover() -> bytes:
    """A small real PNG (Pillow), as a cover picture."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 90)).save(buffer, "PNG")
    return buffer.getvalue()
