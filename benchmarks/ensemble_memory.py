"""Peak memory of an ensemble: three models in one streaming pass vs one model alone.

Generates a long 44.1 kHz stereo 16-bit WAV (30 minutes by default) in a temporary
folder, then separates it in a fresh subprocess per configuration through
`stemsplit.api.separate` (reader -> spool -> engine -> ensemble -> writers, 4 stems as
16-bit WAV) and prints each run's peak RSS (VmHWM), its RSS after imports, wall time
and the ratio of the ensemble's peak to the single model's.

The models are small deterministic convolutions (the figure is the engine's, not a
network's weights) with three different recipes, so the ensemble exercises what a real
one does: two sample rates (44.1 and 22.05 kHz spools, resampled streams), three
segment lengths, Demucs-style triangle/context/normalised chunks and MSST-style
fades with reflect borders.

    python benchmarks/ensemble_memory.py [--minutes 30] [--ensemble avg max-spec] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_line
from io_memory import make_wav, vm_kib

SOURCES = ["drums", "bass", "other", "vocals"]


def _toy(samplerate: int, segment: int, window: str, kernel: int):
    """A 4-stem model: moving averages of the mix (cheap, deterministic)."""
    import torch
    from torch import nn

    from stemsplit.models.base import Recipe

    class Smooth(nn.Module):
        sources = SOURCES
        audio_channels = 2
        residual = None

        def __init__(self) -> None:
            super().__init__()
            self.samplerate = samplerate
            demucs_like = window == "triangle"
            self.recipe = Recipe(
                segment, 0.25 if demucs_like else 0.5, window,
                "context" if demucs_like else "reflect-border",
                "track-mean-std" if demucs_like else "none", 4,
            )  # fmt: skip
            self.register_buffer("kernel", torch.full((2, 1, kernel), 1 / kernel))

        def valid_length(self, length: int) -> int:
            return length

        def forward(self, mix: torch.Tensor) -> torch.Tensor:
            low = nn.functional.conv1d(mix, self.kernel, padding=kernel // 2, groups=2)
            low = low[..., : mix.shape[-1]]
            high = mix - low
            return torch.stack([0.5 * high, low, 0.3 * high, 0.2 * high], dim=1)

    return Smooth().eval()


@dataclass
class Bundle:
    """What the zoo's loader returns (a ModelBundle), for one toy network."""

    name: str
    members: list
    residual: str | None = None
    card: object = None
    sources: list = field(default_factory=lambda: list(SOURCES))
    weights: list = field(default_factory=lambda: [[1.0] * 4])

    @property
    def samplerate(self) -> int:
        return self.members[0].samplerate


def bundles(count: int) -> list[Bundle]:
    made = [
        Bundle("demucs_like", [_toy(44100, 44100 * 39 // 5, "triangle", 9)]),  # 7.8 s segment
        Bundle("msst_like", [_toy(22050, 22050 * 4, "fade", 5)]),  # 4 s at 22.05 kHz
        Bundle("tasnet_like", [_toy(44100, 44100 * 8, "triangle", 15)]),  # 8 s
    ]
    return made[:count]


def child(source: str, out: str, count: int, ensemble: str) -> None:
    """Run in the subprocess: separate `source` with `count` models; print JSON figures."""
    import torch

    from stemsplit import api

    torch.set_num_threads(2)
    models = bundles(count)
    baseline = vm_kib("VmRSS")
    started = time.perf_counter()
    results = api.separate(
        source, model=models if count > 1 else models[0], out=out, bit_depth=16,
        ensemble=ensemble if count > 1 else None, skip_existing=False,
    )  # fmt: skip
    assert [r.status for r in results] == ["done"], results
    print(json.dumps({
        "seconds": time.perf_counter() - started,
        "baseline_mib": baseline / 1024,
        "peak_mib": vm_kib("VmHWM") / 1024,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--ensemble", nargs="+", default=["avg"])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        source = folder / f"mix_{args.minutes:g}min.wav"
        make_wav(source, args.minutes)
        runs = [(1, "-")] + [(3, name) for name in args.ensemble]
        print(f"{args.minutes:g} min input, {source.stat().st_size / 2**20:.0f} MiB WAV")
        print(cpu_line())
        print(f"{'models':>6} {'ensemble':>9} {'baseline MiB':>13} {'peak RSS MiB':>13} "
              f"{'seconds':>8} {'peak / one':>10}", flush=True)
        single = None
        for count, ensemble in runs:  # each in a fresh process: its own peak
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(source),
                 str(folder / f"out_{count}_{ensemble}"), str(count), ensemble],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode:
                sys.exit(done.stderr)
            fig = json.loads(done.stdout.strip().splitlines()[-1])
            single = single or fig["peak_mib"]
            print(f"{count:>6} {ensemble:>9} {fig['baseline_mib']:>13.1f} {fig['peak_mib']:>13.1f} "
                  f"{fig['seconds']:>8.1f} {fig['peak_mib'] / single:>10.3f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
