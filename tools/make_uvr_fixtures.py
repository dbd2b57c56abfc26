"""Build tiny random-weight UVR models and freeze audio-separator 0.47.1's outputs on them.

Writes tests/data/uvr/: the mixtures (`mixture.flac`: 3 s of the shared MUSDB sample;
`mixture_vr.flac`: 2.9 s of it with a quiet middle, where VR's post-process acts, and
a little high-passed noise above 15 kHz, the "air" that high-end process rebuilds and
that the MUSDB encode cut off), per fixture the ONNX model (`model.onnx`; VR weights
are not kept: `vr_weights(name)` rebuilds them from a seed), the `--config` JSON
stemsplit reads, and what audio-separator writes for each stem (the float array handed
to soundfile, after its peak normalisation) as 16-bit FLAC scaled to a peak of 1
(`<fixture>/<stem>.flac`; `fixture.json` "gains" scales it back: rounding is ~85 dB
below each stem, far under the tests' 50 dB bar).

VR weights are seeded random numbers shaped so that every setting shows: batch-norm
shifts and biases zeroed (quiet input gives a mask near 0.5, which post-process acts
on), the LSTM and the mask head scaled up (the mask depends on the patch around each
frame, so TTA's shifted pass and the window size matter).

Needs audio-separator==0.47.1 (installed --no-deps), onnxruntime, onnx, onnx2torch,
librosa, samplerate, resampy, scipy. Run: python tools/make_uvr_fixtures.py [NAME ...]
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "uvr"
SOURCE = Path("/work/shared/data/musdb-sample/mixture.flac")

_COMMON = {"normalization_threshold": 0.9, "amplification_threshold": 0.0}

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
    "mdx_bass": {  # held out: the stems peak above 0.4, so the writer's limit acts
        "model": {"compensate": 1.035, "mdx_dim_f_set": 256, "mdx_dim_t_set": 7,
                  "mdx_n_fft_scale_set": 4096, "primary_stem": "Bass"},
        "mdx_params": {"hop_length": 768, "segment_size": 160, "overlap": 0.6,
                       "batch_size": 3, "enable_denoise": True},
        "normalization_threshold": 0.4, "amplification_threshold": 0.0, "seed": 9,
    },
}

# VR fixtures: "family" nets_new (VR 5.1 CascadedNet; nout, nout_lstm) or nets (the old
# CascadedASPPNet of UVR's size class "arch"); "shape" scales the seeded weights.
_SHAPED = {"zero_shift": True, "lstm": 30.0, "lstm_in": 10.0, "out": 30.0}
_VR_DEFAULTS = {**_COMMON, "mixture": "mixture_vr.flac", "shape": _SHAPED, "family": "nets_new"}


def _vr(modelparams: str, primary: str, seed: int, window: int, aggression: int, batch: int,
        tta: bool, high_end: bool, post: float | None = None, **rest) -> dict:
    """One VR fixture: model data, `vr_params` (`post`: post-process threshold, None for
    off) and the rest (`nout`/`nout_lstm` go to the model data, the others beside it)."""
    model = {"vr_model_param": modelparams, "primary_stem": primary}
    model.update({k: rest.pop(k) for k in ("nout", "nout_lstm") if k in rest})
    params = {"batch_size": batch, "window_size": window, "aggression": aggression,
              "enable_tta": tta, "enable_post_process": post is not None,
              "post_process_threshold": 0.2 if post is None else post,
              "high_end_process": high_end}  # fmt: skip
    return {**_VR_DEFAULTS, "model": model, "vr_params": params, "seed": seed, **rest}


VR_FIXTURES = {
    # nets_new.CascadedNet (VR 5.1), tiny nout, unshaped weights
    "vr_new": _vr("4band_v4_ms_fullband", "Echo", 3, 320, 12, 2, True, True, 0.3, nout=4,
                  nout_lstm=8, mixture="mixture.flac", shape={}),
    # nets.CascadedASPPNet, the 31191 KB "sp" capacity, unshaped weights
    "vr_nets": _vr("4band_v3", "Instrumental", 4, 384, 7, 3, False, True, family="nets",
                   arch=31191, mixture="mixture.flac", shape={}),
    # Held out (issue 29): the VR 5.1 net and settings that stemsplit missed by 11-13 dB.
    "vr51_v3_sn": _vr("4band_v3_sn", "Vocals", 5, 320, 10, 2, True, True, 0.2, nout=4,
                      nout_lstm=16, normalization_threshold=0.8),
    "vr51_v4_ms": _vr("4band_v4_ms_fullband", "Instrumental", 6, 384, -20, 4, True, False, 0.1,
                      nout=8, nout_lstm=16, normalization_threshold=0.7,
                      amplification_threshold=0.95),
    "vr51_v2_sn_32k": _vr("2band_32000", "Drums", 7, 256, 30, 3, False, True, 0.3, nout=4,
                          nout_lstm=16, normalization_threshold=0.6),
    "vr51_1band_32k": _vr("1band_sr32000_hl512", "Vocals", 8, 448, 0, 2, True, True, nout=4,
                          nout_lstm=16),
    "vr_nets_3band_mid": _vr("3band_44100_mid", "Instrumental", 10, 320, 15, 2, True, True, 0.2,
                             normalization_threshold=0.85, family="nets", arch=31191),
    "vr_nets_3band_msb2": _vr("3band_44100_msb2", "Vocals", 11, 512, 8, 1, True, True,
                              family="nets", arch=31191),
    "vr_nets_4band_reverse": _vr("4band_44100_reverse", "Instrumental", 12, 384, 5, 2, False,
                                 False, 0.3, normalization_threshold=0.75, family="nets",
                                 arch=31191),
    "vr_nets_1band_hl1024": _vr("1band_sr44100_hl1024", "Vocals", 13, 320, 20, 2, True, True,
                                0.1, family="nets", arch=31191),
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


def vr_weights(name: str) -> dict[str, torch.Tensor]:
    """A VR fixture's state dict: seeded random weights (numpy PCG64), shaped by "shape"."""
    from stemsplit.models.uvr.vr_nets import build_vr_network

    spec = VR_FIXTURES[name]
    record = spec["model"]
    bins = _modelparams(record["vr_model_param"])["bins"]
    if spec["family"] == "nets":
        net = build_vr_network(bins, None, None, kind="nets", nn_arch_size=spec["arch"])
    else:
        net = build_vr_network(bins, record["nout"], record["nout_lstm"], kind="nets_new")
    return _shape(_random_state(net, spec["seed"]), spec["shape"])


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


def _shape(state: dict[str, torch.Tensor], shape: dict) -> dict[str, torch.Tensor]:
    """Zero the shifts (running means, biases) and scale the LSTM and mask head."""
    for key, value in state.items():
        if shape.get("zero_shift") and (key.endswith("running_mean") or key.endswith("bias")
                                        or ".bias_" in key):  # fmt: skip
            value.zero_()
        if ".lstm.weight_ih" in key:
            value *= shape.get("lstm_in", 1.0)
        if key.endswith("lstm_dec2.dense.0.weight"):
            value *= shape.get("lstm", 1.0)
        if key in ("out.weight", "out.bias"):
            value *= shape.get("out", 1.0)
    return state


def _common_config(model_path: Path, record: dict, spec: dict, output_dir: str) -> dict:
    logger = logging.getLogger("audio_separator_fixture")
    return {
        "logger": logger, "log_level": logging.WARNING, "torch_device": torch.device("cpu"),
        "torch_device_cpu": torch.device("cpu"), "torch_device_mps": None,
        "onnx_execution_provider": ["CPUExecutionProvider"], "model_name": model_path.stem,
        "model_path": str(model_path), "model_data": dict(record), "output_dir": output_dir,
        "output_format": "WAV", "output_bitrate": None,
        "normalization_threshold": spec["normalization_threshold"],
        "amplification_threshold": spec["amplification_threshold"],
        "output_single_stem": None, "invert_using_spec": False, "sample_rate": 44100,
        "use_soundfile": True,
    }


def _capture(separator, mixture: Path) -> dict[str, np.ndarray]:
    """What audio-separator writes for each stem: the array its writer hands soundfile."""
    from audio_separator.separator import common_separator

    captured: dict[str, np.ndarray] = {}
    real_write = common_separator.sf.write
    final_process = separator.final_process
    current: list[str] = []

    def write(path, data, *args, **kwargs):
        captured[current[-1]] = np.array(data, dtype=np.float32)
        return real_write(path, data, *args, **kwargs)

    def final(stem_path, source, stem_name):
        current.append(stem_name)
        return final_process(stem_path, source, stem_name)

    separator.final_process = final
    common_separator.sf.write = write
    try:
        separator.separate(str(mixture))
    finally:
        common_separator.sf.write = real_write
    return captured


def _write(folder: Path, name: str, spec: dict, record: dict, model_file: str,
           stems: dict[str, np.ndarray]) -> None:
    from stemsplit.models.uvr.common import stem_name

    private = {"model", "seed", "family", "arch", "shape", "mixture"}
    config = {key: value for key, value in spec.items() if key not in private}
    config.update(record)
    (folder / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    gains = {}
    for stem, audio in stems.items():
        gains[stem_name(stem)] = float(np.abs(audio).max()) / 0.999
        soundfile.write(str(folder / f"{stem_name(stem)}.flac"), audio / gains[stem_name(stem)],
                        44100, subtype="PCM_16")  # fmt: skip
    meta = {"model": model_file, "stems": {stem_name(s): s for s in stems}, "gains": gains,
            "lengths": {stem_name(s): int(a.shape[0]) for s, a in stems.items()},
            "mixture": spec.get("mixture", "mixture.flac"),
            "reference": "audio-separator 0.47.1", "seed": spec["seed"]}
    (folder / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(name, {s: a.shape for s, a in stems.items()})


def make_mixtures() -> None:
    """`mixture.flac` (3 s of the sample) and `mixture_vr.flac` (see the module doc)."""
    OUT.mkdir(parents=True, exist_ok=True)
    audio, rate = soundfile.read(str(SOURCE), dtype="float32", always_2d=True)
    start = 2 * rate
    soundfile.write(str(OUT / "mixture.flac"), audio[start : start + 3 * rate + 1234], rate,
                    subtype="PCM_16")  # fmt: skip
    clip = audio[start : start + int(2.9 * rate) + 777].astype(np.float64)
    time = np.arange(clip.shape[0]) / rate
    ramp = np.clip(np.minimum(np.abs(time - 0.8), np.abs(time - 2.05)) / 0.05, 0, 1)
    envelope = np.where((time > 0.8) & (time < 2.05), 0.03 + 0.97 * (1 - ramp), 1.0)
    noise = np.random.default_rng(0).normal(0, 1, clip.shape)
    spectrum = np.fft.rfft(noise, axis=0)
    spectrum[np.fft.rfftfreq(clip.shape[0], 1 / rate) < 15000] = 0
    air = np.fft.irfft(spectrum, n=clip.shape[0], axis=0)
    air *= 0.02 / np.sqrt(np.mean(air**2))
    mixture = (clip + air) * envelope[:, None] * 0.9
    soundfile.write(str(OUT / "mixture_vr.flac"), mixture.astype(np.float32), rate,
                    subtype="PCM_16")  # fmt: skip


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
    make_mixtures()
    scratch = tempfile.mkdtemp(prefix="uvr_fixtures_")
    for name, spec in MDX_FIXTURES.items():
        if only and name not in only:
            continue
        folder = OUT / name
        folder.mkdir(exist_ok=True)
        record = spec["model"]
        export_mdx(folder / "model.onnx", spec["seed"], record["mdx_dim_f_set"])
        separator = MDXSeparator(_common_config(folder / "model.onnx", record, spec, scratch),
                                 dict(spec["mdx_params"]))  # fmt: skip
        stems = _capture(separator, OUT / spec.get("mixture", "mixture.flac"))
        _write(folder, name, spec, record, "model.onnx", stems)
    for name, spec in VR_FIXTURES.items():
        if only and name not in only:
            continue
        folder = OUT / name
        folder.mkdir(exist_ok=True)
        record = spec["model"]
        model_path, model_file = Path(scratch) / f"{name}.pth", f"(vr_weights({name!r}))"
        torch.save(vr_weights(name), str(model_path))
        separator = VRSeparator(_common_config(model_path, record, spec, scratch),
                                dict(spec["vr_params"]))  # fmt: skip
        _write(folder, name, spec, record, model_file, _capture(separator, OUT / spec["mixture"]))


if __name__ == "__main__":
    main()
