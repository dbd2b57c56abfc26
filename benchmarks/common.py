"""Shared pieces of the benchmarks: model configs, test audio, demucs checkpoints, timing.

Weights are random (demucs' HTDemucs with seed 0): speed and memory do not depend on
their values. Audio is the MUSDB sample from ../shared looped to the wanted length
(noise when it is absent), written block by block so long files cost no memory here.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
import time
import types
from fractions import Fraction
from pathlib import Path

import numpy as np

RATE = 44100
SOURCES = ["drums", "bass", "other", "vocals"]
SHARED_MIX = Path(__file__).resolve().parents[2] / "shared/data/musdb-sample/mixture.flac"

# Released htdemucs hyperparameters (demucs remote/htdemucs.yaml).
HTDEMUCS_KWARGS = dict(
    sources=SOURCES, audio_channels=2, samplerate=RATE,
    segment=Fraction(39, 5), channels=48, growth=2, nfft=4096, depth=4, kernel_size=8, stride=4,
    context=1, context_enc=0, norm_starts=4, dconv_mode=3, dconv_depth=2, dconv_comp=8,
    dconv_init=1e-3, freq_emb=0.2, emb_scale=10, bottom_channels=512, t_layers=5, t_heads=8,
    t_hidden_scale=4.0, t_emb="sin", t_norm_in=True, t_norm_first=True, t_norm_out=True,
    t_layer_scale=True, t_gelu=True, t_cross_first=False, cac=True, rewrite=True,
)  # fmt: skip
# A small HTDemucs with the same structure (depth 4 keeps the transformer's time
# stream short) for runs over long files: same engine, a fraction of the compute.
SMALL_KWARGS = dict(
    HTDEMUCS_KWARGS, channels=8, bottom_channels=0, t_layers=1, t_heads=2
)
CONFIGS = {"full": HTDEMUCS_KWARGS, "small": SMALL_KWARGS}


def music(seconds: float) -> np.ndarray:
    """`[2, seconds * 44100]` float32: the MUSDB sample looped (noise without it)."""
    length = int(seconds * RATE)
    if SHARED_MIX.exists():
        import soundfile as sf

        sample, _ = sf.read(SHARED_MIX, dtype="float32", always_2d=True)
        return np.tile(sample.T, (1, length // sample.shape[0] + 1))[:, :length]
    return np.random.default_rng(0).standard_normal((2, length)).astype(np.float32) * 0.1


def write_music_wav(path: Path, seconds: float, block_seconds: int = 60) -> Path:
    """A 16-bit stereo WAV of `seconds` of looped music, written block by block."""
    import soundfile as sf

    block = music(min(seconds, block_seconds))
    total = int(seconds * RATE)
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as handle:
        for start in range(0, total, block.shape[1]):
            handle.write(block[:, : total - start].T)
    return path


def demucs_model(config: str = "full"):
    """demucs' own HTDemucs with `config`'s hyperparameters, seed 0, eval mode."""
    import torch
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    return HTDemucs(**CONFIGS[config]).eval()


def write_demucs_checkpoint(path: Path, config: str = "full") -> Path:
    """A `.th` file as demucs writes it (serialize_model + torch.save), for --checkpoint."""
    import torch

    if "omegaconf" not in sys.modules:  # serialize_model only needs OmegaConf.to_container
        try:
            import omegaconf  # noqa: F401
        except ModuleNotFoundError:
            stub = types.ModuleType("omegaconf")
            stub.OmegaConf = types.SimpleNamespace(  # type: ignore[attr-defined]
                to_container=lambda value, resolve=True: dict(value)
            )
            sys.modules["omegaconf"] = stub
    from demucs.states import serialize_model

    buffer = io.BytesIO()
    torch.save(serialize_model(demucs_model(config), {"bench": config}, half=False), buffer)
    path.write_bytes(buffer.getvalue())
    return path


def run_measured(command: list[str], env: dict[str, str] | None = None) -> dict:
    """Run `command`; its wall time and peak RSS (of the process and its waited children)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:  # interrupted: do not leave the child running
        process.terminate()
        process.wait()
        raise
    seconds = time.perf_counter() - started
    stdout, stderr = process.stdout.read(), process.stderr.read()
    process.stdout.close()
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{command} failed ({code}):\n{stderr.decode(errors='replace')}")
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "stdout": stdout.decode(errors="replace"),
        "stderr": stderr.decode(errors="replace"),
    }


def stemsplit_command() -> list[str]:
    """The installed console script beside this interpreter, else `python -m stemsplit`."""
    script = Path(sys.executable).with_name("stemsplit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stemsplit"]


def run_stemsplit(wav: Path, checkpoint: Path, out: Path, threads: int = 2) -> dict:
    """`stemsplit WAV --checkpoint CKPT -o OUT --device cpu` in a fresh process, measured."""
    command = [*stemsplit_command(), str(wav), "--checkpoint", str(checkpoint), "-o", str(out),
               "--device", "cpu", "--threads", str(threads), "--format", "flac"]  # fmt: skip
    return run_measured(command, env={"OMP_NUM_THREADS": str(threads)})


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so temporary folders (GBs of WAV) are removed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def worker_result(impl: str, out: np.ndarray, out_path: Path, started: float,
                  cpu_started: float) -> dict:
    """A timed in-process run's figures: wall and CPU seconds since `started` /
    `cpu_started`, the output saved for the parent to compare, this process's peak RSS."""
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    np.save(out_path, out)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mb": rss_mb}


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_info() -> dict:
    """This machine's CPU model, core count, load and the flags that decide fp32/bf16/int8
    speed (Linux /proc/cpuinfo; empty fields elsewhere), plus torch's own view of bf16."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
        "load": [round(value, 2) for value in os.getloadavg()],
    }
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        try:
            info["mkldnn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            info["mkldnn_bf16"] = None
    return info


def cpu_line() -> str:
    """`cpu_info()` as one line to print beside every figure."""
    info = cpu_info()
    line = (f"CPU: {info['cpu'] or 'unknown'} ({info['cores']} cores visible), "
            f"flags: {' '.join(info['flags']) or 'none of ' + '/'.join(CPU_FLAGS)}, "
            f"load {' '.join(str(v) for v in info['load'])}")
    if "mkldnn_bf16" in info:
        line += f", torch {info['torch']} mkldnn bf16: {info['mkldnn_bf16']}"
    return line


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    noise = np.sum((estimate - reference) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / max(noise, 1e-20)))
