"""A long input object on S3 through `stemsplit`: peak local disk and peak RSS.

    python benchmarks/bucket_inputs.py [--minutes 20] [--formats wav flac] [--outputs bucket local]

Serves a bucket with moto on 127.0.0.1 (the tests' S3 server), uploads `--minutes` of
looped music as a 16-bit WAV and FLAC object, and runs `stemsplit s3://songs/long.EXT
--checkpoint tiny.th --threads 1` (a tiny HDemucs: the model's size does not matter
here) in a fresh process whose TMPDIR is an empty folder, with `-o s3://stems/EXT`
(bucket) or `-o` a local folder (local: what the input side alone costs). A thread
walks both folders every 50 ms and keeps the peak bytes of: copies of the input
(`stemsplit-input-*`, what the run fetched), decode spools (`.stemsplit-spool-*`,
float32 at the model's rate, for the engine's random access), the rest (stems, staged
before their upload or final) and all together. Peak RSS and CPU time are the
process's (wait4): wall time also counts moto, which serves each ranged read by copying
the whole object in Python, on the same machine.
The moto server runs in a process of its own: a child's peak RSS on Linux starts from
its parent's at the exec (vfork), and moto keeps every object in memory.
One JSON line per format and output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), *(str(HERE.parent / "tests" / sub) for sub in ("", "batch", "zoo"))]

from common import music, stemsplit_command, write_music_wav  # noqa: E402

CATEGORIES = {"input_copy": "stemsplit-input-", "spool": ".stemsplit-spool-"}


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes under `folder` by category (files vanish while we walk: skip those)."""
    sizes = dict.fromkeys([*CATEGORIES, "stems", "total"], 0)
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            try:
                size = os.stat(path).st_size
            except OSError:
                continue
            kind = next((k for k, mark in CATEGORIES.items() if mark in path), "stems")
            sizes[kind] += size
            sizes["total"] += size
    return sizes


def run_watched(command: list[str], env: dict[str, str], folder: Path) -> dict[str, float]:
    """Run `command`; its wall time, peak RSS and peak bytes under `folder` by category."""
    peaks = dict.fromkeys([*CATEGORIES, "stems", "total"], 0)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for kind, size in folder_bytes(folder).items():
                peaks[kind] = max(peaks[kind], size)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)  # fmt: skip
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        done.set()
        watcher.join()
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{command} failed:\n{stderr}")
    return {"seconds": round(time.perf_counter() - started, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            **{f"peak_{k}_mb": round(v / 2**20, 1) for k, v in peaks.items()}}  # fmt: skip


def write_flac(path: Path, seconds: float) -> Path:
    import soundfile

    block = music(60)
    total = int(seconds * 44100)
    with soundfile.SoundFile(path, "w", 44100, 2, subtype="PCM_16") as handle:
        for start in range(0, total, block.shape[1]):
            handle.write(block[:, : total - start].T)
    return path


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str) -> None:
    import requests

    for _ in range(300):
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    sys.exit(f"no server at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--formats", nargs="+", default=["wav", "flac"])
    parser.add_argument("--outputs", nargs="+", default=["bucket", "local"])
    args = parser.parse_args()
    import boto3
    import requests
    from batch_cli import tiny_demucs_checkpoint

    host, port = "127.0.0.1", free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_for(f"http://{host}:{port}/moto-api/")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    os.environ.update(env)
    try:
        with tempfile.TemporaryDirectory(prefix="bucket-inputs-") as tmp:
            folder = Path(tmp)
            model = tiny_demucs_checkpoint(folder / "tiny.th")
            for kind in args.formats:
                requests.post(f"http://{host}:{port}/moto-api/reset", timeout=30)
                client = boto3.client("s3")
                for bucket in ("songs", "stems"):
                    client.create_bucket(Bucket=bucket)
                source = folder / f"long.{kind}"
                writer = write_music_wav if kind == "wav" else write_flac
                writer(source, args.minutes * 60)
                client.upload_file(str(source), "songs", source.name)
                size_mb = source.stat().st_size / 2**20
                source.unlink()
                for output in args.outputs:
                    run = folder / "run"
                    (run / "scratch").mkdir(parents=True)
                    out = f"s3://stems/{kind}" if output == "bucket" else str(run / "out")
                    command = [*stemsplit_command(), f"s3://songs/{source.name}",
                               "--checkpoint", str(model), "-o", out, "--threads", "1"]  # fmt: skip
                    figures = run_watched(command, {**env, "TMPDIR": str(run / "scratch")}, run)
                    print(json.dumps({"format": kind, "output": output, "minutes": args.minutes,
                                      "object_mb": round(size_mb, 1), **figures}), flush=True)  # fmt: skip
                    assert not list((run / "scratch").iterdir())  # the run left nothing
                    shutil.rmtree(run)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
