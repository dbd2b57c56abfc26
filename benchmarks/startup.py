"""Start-up time of the CLI: `stemsplit --help` median wall time (the bar: <= 0.3 s).

Also times `stemsplit models --json` and checks that neither imports torch (listing
model cards needs none). Each run is a fresh process of the installed console script.

    python benchmarks/startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from common import cpu_line, run_measured, stemsplit_command

BAR_S = 0.3
TORCH_PROBE = (
    "import sys\n"
    "from stemsplit.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
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
