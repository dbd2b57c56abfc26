"""Start-up time of the CLI: `stemsplit --help` median wall time (the bar: <= 0.3 s).

Also times `stemsplit models --json` and checks that neither imports torch (listing
model cards needs none). Each run is a fresh process of the installed console script.

    python benchmarks/startup.py [--repeats 15]

`--first-segment`: how soon a separation gets going, with the start-up overlap
(`stemsplit.startup`) on (STEMSPLIT_STARTUP_OVERLAP=1) and off, in alternating rounds.
Cases: `stemsplit song.wav` (the htdemucs card, its file in a model folder made here:
the released-size HTDemucs with random weights), the same with `--checkpoint FILE`,
and `-o - -s vocals -f raw` (seconds to the first byte of audio on stdout). Each run goes through
`startup_trace.py`, which stamps each step: `import torch` done, the plan made, the
input spooled, the first segment started and done.

    python benchmarks/startup.py --first-segment [--rounds 5] [--seconds 240]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_line, run_measured, stemsplit_command

BAR_S = 0.3
TORCH_PROBE = (
    "import sys\n"
    "from stemsplit.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
)


TRACE = Path(__file__).with_name("startup_trace.py")
STEPS = ("torch", "planned", "spooled", "segment_start", "segment_done", "first_byte")
HTDEMUCS_FILE = "955717e8-8726e21a.th"  # the htdemucs card's file name (weights/demucs.toml)


def traced_run(args: list[str], env: dict[str, str], pipe: bool) -> dict[str, float]:
    """Seconds from launching `stemsplit ARGS` to each step, and its peak RSS (MB). A file
    run stops after the first segment; a pipe run once the first byte is out."""
    env = {**os.environ, **env, "STEMSPLIT_TRACE_STOP": "" if pipe else "segment_done"}
    started = time.time()
    process = subprocess.Popen([sys.executable, str(TRACE), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    times: dict[str, float] = {}
    if pipe:
        if process.stdout.read(1):
            times["first_byte"] = time.time() - started
        process.stdout.close()  # as `| head -c 1`: the run stops and cleans up
    _, status, usage = os.wait4(process.pid, 0)
    for line in process.stderr.read().decode(errors="replace").splitlines():
        if line.startswith("@startup "):
            _, step, stamp = line.split()
            times.setdefault(step, float(stamp) - started)
    process.stderr.close()
    if not pipe:
        process.stdout.close()
    if "segment_start" not in times:
        raise RuntimeError(f"stemsplit {' '.join(args)} failed ({status})")
    times["peak_rss_mb"] = usage.ru_maxrss / 1024
    return times


def first_segment(rounds: int, seconds: float) -> None:
    """The --first-segment table: medians and minima per case and variant."""
    from common import write_demucs_checkpoint, write_music_wav

    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        folder = Path(tmp)
        song = write_music_wav(folder / "song.wav", seconds)
        models = folder / "models"
        models.mkdir()
        checkpoint = write_demucs_checkpoint(models / HTDEMUCS_FILE)
        cases = {
            "stemsplit song.wav": (["--device", "cpu"], False),
            "--checkpoint FILE": (["--checkpoint", str(checkpoint), "--device", "cpu"], False),
            "-o - -s vocals -f raw": (["-o", "-", "-s", "vocals", "-f", "raw", "--device", "cpu"],
                                      True),
        }
        env = {"STEMSPLIT_MODEL_DIR": str(models), "STEMSPLIT_OFFLINE": "1"}
        variants = {"overlap": {"STEMSPLIT_STARTUP_OVERLAP": "1"},
                    "no overlap": {"STEMSPLIT_STARTUP_OVERLAP": "0"}}
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        print(f"{cpu_line()}; {seconds:g} s WAV, {rounds} alternating rounds")
        for number in range(rounds):
            for case, (args, pipe) in cases.items():
                order = list(variants) if number % 2 == 0 else list(variants)[::-1]
                for variant in order:
                    out = folder / f"out-{number}-{len(results)}"
                    words = [str(song), "-q", "--overwrite", *args]
                    words += [] if pipe else ["-o", str(out)]
                    runs = results.setdefault((case, variant), [])
                    runs.append(traced_run(words, {**env, **variants[variant]}, pipe))
        print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"{'case':20} {'variant':11} " + " ".join(f"{s:>17}" for s in STEPS)
              + "  peak RSS")  # fmt: skip
        for (case, variant), runs in results.items():
            cells = []
            for step in STEPS:
                values = [run[step] for run in runs if step in run]
                cells.append(f"{statistics.median(values):7.2f} ({min(values):5.2f})"
                             if values else f"{'-':>17}")  # fmt: skip
            rss = statistics.median(run["peak_rss_mb"] for run in runs)
            print(f"{case:20} {variant:11} {' '.join(cells)}  {rss:6.0f} MB")
        print("seconds from launch: median (minimum)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--first-segment", action="store_true",
                        help="time to the first segment and first byte, overlap on/off")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=240.0)
    args = parser.parse_args()
    if args.first_segment:
        first_segment(args.rounds, args.seconds)
        return
    print(cpu_line())
    for words in (["--help"], ["models", "--json"]):
        command = [*stemsplit_command(), *words]
        run_measured(command)  # warm the file cache
        times = [run_measured(command)["seconds"] for _ in range(args.repeats)]
        probe = subprocess.run([sys.executable, "-c", TORCH_PROBE, *words],
                               capture_output=True, text=True, check=True)  # fmt: skip
        median = statistics.median(times)
        bar = ""
        if words == ["--help"]:
            bar = f" (bar <= {BAR_S} s: {'met' if median <= BAR_S else 'NOT met'})"
        print(f"stemsplit {' '.join(words):14} median {median:.3f} s, min {min(times):.3f} s "
              f"over {args.repeats}{bar}; {probe.stderr.strip().splitlines()[-1]}")  # fmt: skip


if __name__ == "__main__":
    main()
