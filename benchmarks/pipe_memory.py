"""Peak RSS of `stemsplit - -s vocals -o -` over input length (and pipe-vs-file SNR).

A producer writes a WAV with unknown sizes (as `ffmpeg -f wav -` does) to stemsplit's
stdin as fast as it takes it: the MUSDB sample's mixture looped to each length (the
sample is 6.8 s). stdout is drained and counted. Peak RSS is the child's ru_maxrss.
The model is a tiny random-weight HDemucs (demucs' own classes, as the tests use), so
the figures are the pipe's and the engine's memory, not a big network's.

    python benchmarks/pipe_memory.py --minutes 1 10 60
    python benchmarks/pipe_memory.py --snr        # pipe vs file, Demucs and BS-RoFormer

Results are in docs/pipes.md.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MIXTURE = SHARED / "data" / "musdb-sample" / "mixture.flac"
ROFORMER = SHARED / "fixtures" / "bs_roformer"
RATE = 44100


def tiny_demucs(folder: Path) -> Path:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "batch"), str(ROOT / "tests" / "zoo")]
    import torch
    import zoo_checkpoints as zc
    from demucs.hdemucs import HDemucs

    torch.manual_seed(0)
    model = HDemucs(sources=zc.SOURCES, channels=4, depth=4, nfft=1024, dconv_comp=2, segment=2)
    return zc.save_bytes(folder / "tiny.th", zc.demucs_package_bytes(model))


def wav_header(channels: int = 2, bits: int = 16) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, RATE, RATE * align, align, bits)
    return (b"RIFF" + b"\xff" * 4 + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + b"\xff" * 4)


def run_once(model: Path, minutes: float) -> dict:
    mix, _ = soundfile.read(MIXTURE, dtype="float32")
    pcm = np.clip(np.round(mix * 32768), -32768, 32767).astype("<i2").tobytes()
    total = int(minutes * 60 * RATE) * 4
    command = [sys.executable, "-m", "stemsplit", "-", "--checkpoint", str(model), "-s",
               "vocals", "-o", "-", "-q"]  # fmt: skip
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    received = [0]

    def drain() -> None:
        while chunk := process.stdout.read1(1 << 16):
            received[0] += len(chunk)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    process.stdin.write(wav_header())
    sent = 0
    while sent < total:
        piece = pcm[: min(len(pcm), total - sent)]
        process.stdin.write(piece)
        sent += len(piece)
    process.stdin.close()
    code = process.wait()
    thread.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert code == 0, f"stemsplit exited {code}"
    return {
        "minutes": minutes,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "rss_note": "" if usage.ru_maxrss > before else "(not above an earlier child's peak)",
        "seconds": time.perf_counter() - started,
        "out_frames": (received[0] - 44) // 4,  # 16-bit stereo
        "in_frames": total // 4,
    }


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    error = float(np.sum((estimate.astype(np.float64) - reference) ** 2))
    return 10 * np.log10(float(np.sum(reference.astype(np.float64) ** 2)) / max(error, 1e-30))


def pipe_vs_file(model_args: list[str], stem: str, folder: Path) -> float:
    mix, _ = soundfile.read(MIXTURE, dtype="float32")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mix.wav"
    soundfile.write(path, mix, RATE, subtype="FLOAT")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "stemsplit"]
    exact = ["--bit-depth", "float32", "--clip", "none", "-q", "-s", stem]
    subprocess.run([*base, str(path), *model_args, *exact, "-o", str(folder / "files")],
                   check=True, env=env)  # fmt: skip
    (file_stem,) = (folder / "files").glob(f"*/mix/{stem}.wav")
    with open(path, "rb") as stdin:
        piped = subprocess.run([*base, "-", *model_args, *exact, "-o", "-"], stdin=stdin,
                               capture_output=True, check=True, env=env).stdout  # fmt: skip
    reference = soundfile.read(file_stem, dtype="float32")[0]
    estimate = soundfile.read(io.BytesIO(piped), dtype="float32")[0]
    assert estimate.shape == reference.shape
    return snr_db(estimate, reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 10, 60])
    parser.add_argument("--snr", action="store_true", help="pipe vs file SNR instead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = tiny_demucs(folder)
        if args.snr:
            demucs = pipe_vs_file(["--checkpoint", str(model)], "vocals", folder / "d")
            print(f"tiny HDemucs, vocals, {MIXTURE.name} (6.8 s): pipe vs file {demucs:.1f} dB")
            roformer = pipe_vs_file(["--checkpoint", str(ROFORMER / "model.ckpt"), "--config",
                                     str(ROFORMER / "config.yaml")], "vocals", folder / "r")
            print(f"bs_roformer fixture, vocals: pipe vs file {roformer:.1f} dB")
            return
        print("| input | peak RSS | wall | output frames = input frames |")
        print("|---|---|---|---|")
        for minutes in args.minutes:
            row = run_once(model, minutes)
            same = row["out_frames"] == row["in_frames"]
            print(f"| {minutes:g} min | {row['peak_rss_mb']:.0f} MB {row['rss_note']} | "
                  f"{row['seconds']:.0f} s | {same} |", flush=True)


if __name__ == "__main__":
    main()
