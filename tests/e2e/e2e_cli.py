"""Helpers for the end-to-end tests: run the real command, decode files independently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def stemsplit(*args: str | Path, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m stemsplit ARGS` with a fixed terminal width; never raises on failure.

    One torch thread: these machines run other work beside the tests, and two OpenMP
    threads on two busy cores spin-wait (a 4 s RoFormer run took 25 s instead of 5 s).
    Results do not depend on it.
    """
    return subprocess.run(
        [sys.executable, "-m", "stemsplit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", **(env or {})},
    )  # fmt: skip


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
