"""Build tiny random-weight UVR models and freeze audio-separator 0.47.1's outputs on them.

Writes tests/data/uvr/: `mixture.flac` (3 s of the shared MUSDB sample), per fixture
the model (`*.onnx`, or a VR state dict `*.pth`; the 31 MB old-`nets` VR model is not
kept: `vr_nets_weights()` rebuilds it from a seed), the `--config` JSON stemsplit
reads, and audio-separator's stems as 24-bit FLAC (`<fixture>/<stem>.flac`), taken
before audio-separator's write step (which only peak-normalises on write).

Needs audio-separator==0.47.1 (installed --no-deps), onnxruntime, onnx, onnx2torch,
librosa, samplerate, resampy, scipy. Run: python tools/make_uvr_fixtures.py
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "uvr"
SOURCE = Path("/work/shared/data/musdb-sample/mixture.flac")

# Fixture name -> model data record + audio-separator settings (all non-default).
MDX_FIXTURES = {
    "mdx_denoise": {
        "model": {"compensate": 1.043, "mdx_dim_f_set": 384, "mdx_dim_t_set": 6,
                  "mdx_n_fft_scale_set": 1024, "primary_stem": "Vocals"},
        "mdx_params": {"hop_length": 512, "segment_size": 64, "overlap": 0.5,
                       "batch_size": 2, "enable_denoise": True},
        "normalization_threshold": 0.5, "amplification_threshold": 0.0, "seed": 1,
    },
    "mdx_reverb": {
        "model": {"compensate": 1.0, "mdx_dim_f_set": 512, "mdx_dim_t_set": 5,
                  "mdx_n_fft_scale_set": 2048, "primary_stem": "Reverb"},
        "mdx_params": {"hop_length": 1024, "segment_size": 32, "overlap": 0.8,
                       "batch_size": 1, "enable_denoise": False},
        "normalization_threshold": 0.95, "amplification_threshold": 0.99, "seed": 2,
    },
}

VR_FIXTURES = {
    "vr_new": {  # nets_new.CascadedNet (VR 5.1), tiny nout
        "model": {"vr_model_param": "4band_v4_ms_fullband", "primary_stem": "Echo",
                  "nout": 4, "nout_lstm": 8},
        "vr_params": {"batch_size": 2, "window_size": 320, "aggression": 12,
                      "enable_tta": True, "enable_post_process": True,
                      "post_process_threshold": 0.3, "high_end_process": True},
        "normalization_threshold": 0.9, "amplification_threshold": 0.0, "seed": 3,
    },
    "vr_nets": {  # nets.CascadedASPPNet, the 31191 KB "sp" capacity (weights from a seed)
        "model": {"vr_model_param": "4band_v3", "primary_stem": "Instrumental"},
        "vr_params": {"batch_size": 3, "window_size": 384, "aggression": 7,
                      "enable_tta": False, "enable_post_process": False,
                      "post_process_threshold": 0.2, "high_end_process": True},
        "normalization_threshold": 0.9, "amplification_threshold": 0.0, "seed": 4,
    },
}


class TinyMDX(nn.Module):
    """[B, 4, F, T] -> [B, 4, F, T]: a masked conv stack, enough to be non-linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv2d(4, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, (1, 5), padding=(0, 2))
        self.out = nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x * 10))
        h = torch.relu(self.mid(h)) + h
        return x * torch.sigmoid(self.out(h) * 3) * 1.5


def export_mdx(path: Path, seed: int, dim_f: int) -> None:
    torch.manual_seed(seed)
    net = TinyMDX().eval()
    example = torch.randn(1, 4, dim_f, 16)
    torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch", 3: "time"}, "output": {0: "batch", 3: "time"}},
                      opset_version=17, dynamo=False)  # fmt: skip


def _modelparams(name: str) -> dict:
    from stemsplit.models.uvr.vr_spec import parse_modelparams

    return parse_modelparams(json.loads((ROOT / f"weights/uvr/modelparams/{name}.json").read_text()))


def vr_nets_weights(seed: int) -> dict[str, torch.Tensor]:
    """The old-`nets` SP model's state dict with seeded random weights (numpy PCG64)."""
    from stemsplit.models.uvr.vr_nets import build_vr_network

    params = _modelparams("4band_v3")
    net = build_vr_network(params["bins"], None, None, kind="nets", nn_arch_size=31191)
    return _random_state(net, seed)


def _random_state(net: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.from_numpy(rng.uniform(0.5, 1.5, value.shape).astype(np.float32))
        elif key.endswith("running_mean"):
            state[key] = torch.from_numpy(rng.normal(0, 0.1, value.shape).astype(np.float32))
        else:
            fan_in = max(1, int(np.prod(value.shape[1:]))) if value.ndim > 1 else 4
            scale = 1.0 / np.sqrt(fan_in) if value.ndim > 1 else 0.3
            shift = 1.0 if key.endswith(".weight") and value.ndim == 1 else 0.0
            state[key] = torch.from_numpy(
                (rng.normal(0, scale, value.shape) + shift).astype(np.float32))
    return state


def vr_new_weights(seed: int, record: dict) -> dict[str, torch.Tensor]:
    from stemsplit.models.uvr.vr_nets import build_vr_network

    params = _modelparams(record["vr_model_param"])
    net = build_vr_network(params["bins"], record["nout"], record["nout_lstm"], kind="nets_new")
    return _random_state(net, seed)


def _common_config(model_path: Path, record: dict, spec: dict) -> dict:
    logger = logging.getLogger("audio_separator_fixture")
    return {
        "logger": logger, "log_level": logging.WARNING, "torch_device": torch.device("cpu"),
        "torch_device_cpu": torch.device("cpu"), "torch_device_mps": None,
        "onnx_execution_provider": ["CPUExecutionProvider"], "model_name": model_path.stem,
        "model_path": str(model_path), "model_data": dict(record), "output_dir": "/tmp",
        "output_format": "WAV", "output_bitrate": None,
        "normalization_threshold": spec["normalization_threshold"],
        "amplification_threshold": spec["amplification_threshold"],
        "output_single_stem": None, "invert_using_spec": False, "sample_rate": 44100,
        "use_soundfile": True,
    }


def _capture(separator, mixture: Path) -> dict[str, np.ndarray]:
    captured: dict[str, np.ndarray] = {}

    def final_process(stem_path, source, stem_name):
        captured[stem_name] = np.array(source, dtype=np.float32)
        return {stem_name: source}

    separator.final_process = final_process
    separator.separate(str(mixture))
    return captured


def _write(folder: Path, name: str, spec: dict, record: dict, model_file: str,
           stems: dict[str, np.ndarray]) -> None:
    from stemsplit.models.uvr.common import stem_name

    config = {key: value for key, value in spec.items() if key not in {"model", "seed"}}
    config.update(record)
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    for stem, audio in stems.items():
        soundfile.write(str(folder / f"{stem_name(stem)}.flac"), audio, 44100, subtype="PCM_24")
    meta = {"model": model_file, "stems": {stem_name(s): s for s in stems},
            "lengths": {stem_name(s): int(a.shape[0]) for s, a in stems.items()},
            "reference": "audio-separator 0.47.1", "seed": spec["seed"]}
    (folder / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(name, {s: a.shape for s, a in stems.items()})


def make_mixture() -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    audio, rate = soundfile.read(str(SOURCE), dtype="float32", always_2d=True)
    start = 2 * rate
    clip = audio[start : start + 3 * rate + 1234]
    path = OUT / "mixture.flac"
    soundfile.write(str(path), clip, rate, subtype="PCM_16")
    return path


def main() -> None:
    sys.path.insert(0, str(ROOT))
    if "torchvision" not in sys.modules:  # onnx2torch imports it only for its NMS converter
        import types

        stub, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        stub.__path__ = []  # type: ignore[attr-defined]
        ops.roi_align = ops.batched_nms = ops.nms = None  # type: ignore[attr-defined]
        stub.ops = ops  # type: ignore[attr-defined]
        sys.modules.update({"torchvision": stub, "torchvision.ops": ops})
    from audio_separator.separator.architectures.mdx_separator import MDXSeparator
    from audio_separator.separator.architectures.vr_separator import VRSeparator

    only = set(sys.argv[1:])
    mixture = make_mixture()
    for name, spec in MDX_FIXTURES.items():
        if only and name not in only:
            continue
        folder = OUT / name
        folder.mkdir(exist_ok=True)
        record = spec["model"]
        export_mdx(folder / "model.onnx", spec["seed"], record["mdx_dim_f_set"])
        separator = MDXSeparator(_common_config(folder / "model.onnx", record, spec),
                                 dict(spec["mdx_params"]))  # fmt: skip
        _write(folder, name, spec, record, "model.onnx", _capture(separator, mixture))
    for name, spec in VR_FIXTURES.items():
        if only and name not in only:
            continue
        folder = OUT / name
        folder.mkdir(exist_ok=True)
        record = spec["model"]
        if "nout" in record:
            state, model_file = vr_new_weights(spec["seed"], record), "model.pth"
            model_path = folder / model_file
        else:
            state, model_file = vr_nets_weights(spec["seed"]), None
            model_path = Path("/tmp") / f"uvr_{name}.pth"
        torch.save(state, str(model_path))
        separator = VRSeparator(_common_config(model_path, record, spec), dict(spec["vr_params"]))
        _write(folder, name, spec, record, model_file or "(vr_nets_weights(seed))",
               _capture(separator, mixture))


if __name__ == "__main__":
    main()
