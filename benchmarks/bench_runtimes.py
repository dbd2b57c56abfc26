"""HTDemucs in torch (stemsplit) vs the same network in ONNX Runtime and OpenVINO.

Issue 19 allows an optional runtime only if it beats torch by >= 1.3x on the same
model, measured side by side. The network between the STFT and the ISTFT (encoders,
cross transformer, decoders: everything with weights) is exported once to ONNX from
stemsplit's own modules (tracing sees plain torch ops: `ops._use_onednn`), then one
normalised 7.8 s segment of real music runs through each variant in turn, round after
round (order reversed every other round). The cross transformer alone (the demucs
reference's module, exported the same way) is measured too: it is most of a segment.

Prints minima and medians, each variant's speed against stemsplit's torch path at the
same precision, SNR against stemsplit fp32, the one-time costs (export, conversion,
compilation, first call) and the CPU. Needs torch's ONNX exporter (`pip install onnx
onnxscript`) and `onnxruntime` and/or `openvino` (none of them project dependencies:
`pip install onnxruntime openvino`); a missing runtime is skipped.

    python benchmarks/bench_runtimes.py --rounds 4 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import HTDEMUCS_KWARGS, cpu_line, demucs_model, music

Outputs = list[np.ndarray]


def _timed(label: str, started: float, costs: dict[str, float]) -> None:
    costs[label] = time.perf_counter() - started


def _network_and_inputs(part: str):
    """(stemsplit's module to time in torch, the module to export, example inputs) of
    `part`: "net" (stemsplit's encoders, transformer and decoders on the front end's
    output, both times) or "transformer" (exported: demucs' own module)."""
    import torch
    import torch.nn.functional as F

    from stemsplit.models.demucs import build_demucs

    reference = demucs_model("full")
    model = build_demucs("HTDemucs", (), dict(HTDEMUCS_KWARGS)).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    mix = torch.from_numpy(music(7.8))[None]
    mix = (mix - mix.mean()) / mix.std()
    mix = F.pad(mix, (0, model.training_length - mix.shape[-1]))
    with torch.no_grad():
        _, x, xt, _ = model._front_end(mix)

    class Network(torch.nn.Module):
        """What a runtime would take over: the layers between STFT and ISTFT."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor, xt: torch.Tensor):
            x, xt, skips = self.model._encode(x, xt)
            x, xt = self.model._bottleneck(x, xt)
            return self.model._decode(x, xt, skips)

    network = Network().eval()
    if part == "net":
        return network, network, (x, xt)
    captured = {}
    hook = model.crosstransformer.register_forward_pre_hook(
        lambda module, args: captured.setdefault("args", args)
    )
    with torch.no_grad():
        network(x, xt)
    hook.remove()
    x_in, xt_in = (a.clone() for a in captured["args"])
    return model.crosstransformer, reference.crosstransformer.eval(), (x_in, xt_in)


def variants(part: str, threads: int, folder: Path, costs: dict[str, float]):
    """{name: (precision, callable returning the outputs as float32 numpy)}."""
    import torch

    ours, exported, inputs = _network_and_inputs(part)
    feeds = [a.numpy() for a in inputs]

    def torch_run(bf16: bool) -> Callable[[], Outputs]:
        def run() -> Outputs:
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return [o.float().numpy() for o in ours(*inputs)]

        return run

    found: dict[str, tuple[str, Callable[[], Outputs]]] = {
        "torch fp32": ("fp32", torch_run(False)),
        "torch bf16": ("bf16", torch_run(True)),
    }
    onnx_path = folder / f"{part}.onnx"
    started = time.perf_counter()
    # torch.export (dynamo) sees plain torch ops only: `ops._use_onednn` is off while
    # exporting, as while tracing.
    torch.onnx.export(exported, inputs, str(onnx_path), dynamo=True, opset_version=18,
                      input_names=["x", "xt"], output_names=["y", "yt"], external_data=True)  # fmt: skip
    _timed("ONNX export", started, costs)

    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        started = time.perf_counter()
        session = ort.InferenceSession(str(onnx_path), options, ["CPUExecutionProvider"])
        _timed("onnxruntime session", started, costs)
        named = {"x": feeds[0], "xt": feeds[1]}
        found[f"onnxruntime {ort.__version__} fp32"] = ("fp32", lambda: session.run(None, named))
    else:
        print("onnxruntime not installed: skipped")

    if importlib.util.find_spec("openvino"):
        import openvino as ov

        core = ov.Core()
        started = time.perf_counter()
        network = core.read_model(str(onnx_path))
        _timed("OpenVINO read", started, costs)
        for precision, hint in (("fp32", "f32"), ("bf16", "bf16")):
            started = time.perf_counter()
            compiled = core.compile_model(network, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": hint,
            })  # fmt: skip
            _timed(f"OpenVINO compile {precision}", started, costs)

            def run(compiled=compiled) -> Outputs:
                return [v.copy() for v in compiled(feeds).values()]

            started = time.perf_counter()
            run()
            _timed(f"OpenVINO first call {precision}", started, costs)
            found[f"openvino {ov.__version__.split('-')[0]} {precision}"] = (precision, run)
    else:
        print("openvino not installed: skipped")
    return found


def snr_db(estimate: Outputs, exact: Outputs) -> float:
    signal = sum(float((e.astype(np.float64) ** 2).sum()) for e in exact)
    error = sum(float(((o - e).astype(np.float64) ** 2).sum()) for o, e in zip(estimate, exact))
    return float(10 * np.log10(signal / max(error, 1e-30)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="net,transformer")
    args = parser.parse_args()

    import torch

    from stemsplit.allocator import keep_large_blocks_on_heap

    torch.set_num_threads(args.threads)
    keep_large_blocks_on_heap()  # as `stemsplit separate` runs
    print(cpu_line())
    for part in args.parts.split(","):
        costs: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as folder:
            found = variants(part, args.threads, Path(folder), costs)
            exact = found["torch fp32"][1]()
            snrs = {name: snr_db(run(), exact) for name, (_, run) in found.items()}
            times: dict[str, list[float]] = {name: [] for name in found}
            names = list(found)
            for index in range(args.rounds):
                for name in names if index % 2 == 0 else names[::-1]:
                    started = time.perf_counter()
                    found[name][1]()
                    times[name].append(time.perf_counter() - started)
        label = "encoders + transformer + decoders" if part == "net" else "cross transformer"
        print(f"\nHTDemucs {label}, one 7.8 s segment, {args.threads} threads, "
              f"{args.rounds} rounds")  # fmt: skip
        print(f"{'variant':26} {'min s':>7} {'median s':>9} {'torch/this':>11} {'SNR dB':>7}")
        for name, values in times.items():
            precision = found[name][0]
            base = min(times[f"torch {precision}"])
            print(f"{name:26} {min(values):7.3f} {statistics.median(values):9.3f} "
                  f"{base / min(values):11.2f} {snrs[name]:7.1f}")  # fmt: skip
        print("one-time: " + ", ".join(f"{k} {v:.1f} s" for k, v in costs.items()))


if __name__ == "__main__":
    main()
