"""Helpers for the end-to-end tests: run the real command, decode files independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cli_run import stemsplit  # noqa: F401 - the tests' one command runner


def decoded_frames(path: Path) -> int:
    """A file's length as its decoder gives it: libsndfile, else a full PyAV decode."""
    import soundfile

    try:
        return soundfile.read(str(path), dtype="float32", always_2d=True)[0].shape[0]
    except (soundfile.SoundFileError, RuntimeError):
        import av

        with av.open(str(path)) as container:
            return sum(frame.samples for frame in container.decode(audio=0))


def write_m4a(path: Path, audio: np.ndarray, rate: int) -> Path:
    """`(frames, 2)` float32 as AAC in an MP4 container (PyAV's encoder)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp",
                                           layout="stereo")  # fmt: skip
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path
