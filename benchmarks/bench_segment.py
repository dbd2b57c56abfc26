"""HTDemucs, one 7.8 s segment: demucs vs stemsplit fp32 vs stemsplit bf16, in one process.

The quickest figure that survives a shared machine: both models are built once (the same
random weights, seed 0, released htdemucs config), then one normalised segment of real
music runs through each variant in turn, round after round (order reversed every other
round), and each variant's minimum and median are printed. The minimum is the run the
other jobs disturbed least; compare it across variants, not across machines.

    python benchmarks/bench_segment.py --rounds 6 --threads 2 --variants demucs,fp32,bf16
    python benchmarks/bench_segment.py --rounds 6 --threads 2 --variants demucs,fp32,int8
    python benchmarks/bench_segment.py --rounds 3 --threads 1 --cpu-time --variants demucs,fp32,int8
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import HTDEMUCS_KWARGS, cpu_line, demucs_model, music


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default="demucs,fp32,bf16")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time (for a shared machine)")
    args = parser.parse_args()

    import torch

    from stemsplit.allocator import keep_large_blocks_on_heap
    from stemsplit.models.demucs import build_demucs
    from stemsplit.models.ops import int8_matmuls

    torch.set_num_threads(args.threads)
    keep_large_blocks_on_heap()  # as `stemsplit separate` runs
    reference = demucs_model("full")
    model = build_demucs("HTDemucs", (), dict(HTDEMUCS_KWARGS))
    model.load_state_dict(reference.state_dict(), strict=True)
    mix = torch.from_numpy(music(7.8))[None]
    mix = (mix - mix.mean()) / mix.std()

    def run(variant: str) -> torch.Tensor:
        with torch.inference_mode():
            if variant == "demucs":
                return reference(mix)
            if variant == "fp32":
                return model(mix)
            if variant == "int8":
                with int8_matmuls():
                    return model(mix)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(mix)

    variants = args.variants.split(",")
    expected = run("demucs")
    snrs = {}
    for variant in variants:  # also the warm-up
        error = (run(variant) - expected).pow(2).sum()
        snrs[variant] = float(10 * torch.log10(expected.pow(2).sum() / error.clamp_min(1e-20)))
    clock = time.process_time if args.cpu_time else time.perf_counter
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for index in range(args.rounds):
        for variant in variants if index % 2 == 0 else variants[::-1]:
            started = clock()
            run(variant)
            times[variant].append(clock() - started)
    print(f"HTDemucs one 7.8 s segment, {args.threads} threads, {args.rounds} rounds")
    print(cpu_line())
    base = min(times.get("demucs", [float("nan")]))
    print(f"{'variant':8} {'min s':>7} {'median s':>9} {'demucs min / min':>17} "
          f"{'SNR vs demucs':>14}  runs")
    for variant, values in times.items():
        print(f"{variant:8} {min(values):7.2f} {statistics.median(values):9.2f} "
              f"{base / min(values):17.2f} {snrs[variant]:14.1f}  "
              f"{' '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()
