"""BS-RoFormer forward on one 8 s chunk: viperx ep_317's layout (depth cut to 4 to keep a
run under a minute on 2 cores), random weights. Prints the best of 3 after a warm-up and
the CPU; `--save FILE` keeps the output to compare two versions (same seed, same input).

    python benchmarks/bench_roformer_forward.py [--depth 4] [--save out.pt]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import cpu_line

from stemsplit.models.roformer import build_roformer
from stemsplit.zoo.safe_yaml import load_yaml

CONFIG = Path(__file__).resolve().parents[1] / "weights" / "configs" / \
    "model_bs_roformer_ep_317_sdr_12.9755.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_yaml(CONFIG)
    config["model"]["depth"] = args.depth
    torch.manual_seed(0)
    model = build_roformer("bs_roformer", config).eval()
    x = torch.randn(1, 2, 44100 * 8, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            y = model(x)
            times.append(time.perf_counter() - started)
    if args.save:
        torch.save(y, args.save)
    print(cpu_line())
    print(f"BS-RoFormer depth {args.depth}, one 8 s chunk: best {min(times):.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
