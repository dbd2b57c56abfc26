"""Peak memory of the streaming I/O path: it must not grow with the track's length.

Generates a 2-minute and a 30-minute 44.1 kHz stereo 16-bit WAV in a temporary folder
(written in blocks), then, in a fresh subprocess per file so each figure is its own,
reads it with `audio.reader.read_blocks` resampling 44.1 kHz -> 48 kHz and writes the
blocks as FLAC with `audio.writer.StemWriter`. Prints peak RSS (VmHWM) per file, the
RSS after imports (baseline), wall time and the long/short ratio.

    python benchmarks/io_memory.py [--minutes 2 30] [--keep DIR]

Imports no torch: the figures are the I/O path alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import cpu_line

RATE = 44100
OUT_RATE = 48000


def make_wav(path: Path, minutes: float, block_seconds: int = 10) -> None:
    """A stereo 16-bit WAV of tones plus noise, written block by block."""
    frames = int(minutes * 60 * RATE)
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as handle:
        for start in range(0, frames, block_seconds * RATE):
            n = min(block_seconds * RATE, frames - start)
            t = (start + np.arange(n)) / RATE
            tone = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.array([1.0, 0.8])
            handle.write((tone + 0.05 * rng.standard_normal((n, 2))).astype(np.float32))


def vm_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmHWM: peak RSS, VmRSS: current)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(source: str, target: str) -> None:
    """Run in the subprocess: stream source -> 48 kHz -> FLAC; print JSON figures."""
    from stemsplit.audio.reader import read_blocks
    from stemsplit.audio.writer import StemWriter

    baseline = vm_kib("VmRSS")
    started = time.perf_counter()
    frames = 0
    with StemWriter(target, OUT_RATE, 2, format="flac") as writer:
        for block in read_blocks(source, samplerate=OUT_RATE):
            writer.write(block)
            frames += block.shape[1]
    print(json.dumps({
        "frames_out": frames,
        "seconds": time.perf_counter() - started,
        "baseline_mib": baseline / 1024,
        "peak_mib": vm_kib("VmHWM") / 1024,
        "torch_imported": "torch" in sys.modules,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 30])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        results = []
        for minutes in args.minutes:
            source = folder / f"tone_{minutes:g}min.wav"
            make_wav(source, minutes)
            target = folder / f"tone_{minutes:g}min_48k.flac"
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(source), str(target)],
                capture_output=True, text=True, check=True,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            expected = round(sf.info(source).frames * OUT_RATE / RATE)
            assert figures["frames_out"] == expected == sf.info(target).frames
            results.append((minutes, figures, source.stat().st_size / 2**20))
        print(cpu_line())
        print(f"{'input':>10} {'wav MiB':>8} {'baseline MiB':>13} {'peak RSS MiB':>13} "
              f"{'seconds':>8} {'x realtime':>10}")
        for minutes, fig, size in results:
            print(f"{minutes:>6g} min {size:>8.1f} {fig['baseline_mib']:>13.1f} "
                  f"{fig['peak_mib']:>13.1f} {fig['seconds']:>8.2f} "
                  f"{minutes * 60 / fig['seconds']:>10.1f}")
        if len(results) > 1:
            ratio = results[-1][1]["peak_mib"] / results[0][1]["peak_mib"]
            print(f"peak RSS ratio {results[-1][0]:g} min / {results[0][0]:g} min: {ratio:.3f}")
        if any(fig["torch_imported"] for _, fig, _ in results):
            print("warning: torch was imported by the I/O path")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
