"""Write held-out MDX23C / SCNet / SCNet Tran fixtures with MSST's own code (not part of
the package).

Usage: python tools/msst_fixtures_mdx23c_scnet.py --msst DIR [--data DIR] [--out DIR]

DIR is a checkout of ZFTurbo/Music-Source-Separation-Training (commit ccc011a); its
code is imported from there and never copied here. Needs `ml_collections` (MSST's
config class) in the environment; MSST's `utils/audio_utils.py` imports matplotlib,
which only its plotting uses, so a stub module stands in when it is absent.

Each fixture (tests/data/msst/<name>/, under ~1.5 MB): a tiny random network whose
parameters are perturbed by 0.02 x noise (so norms and biases are not at their
defaults), `config.yaml`, `model.ckpt` (state dict), `mixture.flac` (24-bit, cut from
the MUSDB sample), `forward_output.npy` (the first chunk), `demix/<stem>.flac` (24-bit;
MSST's `demix` as inference.py calls it, with `normalize_audio` / `denormalize_audio` when
`inference.normalize` is true) and `meta.json`. The settings differ from the shared
fixtures on purpose: other STFT sizes, stems (one target with a residual, three
stems), mono at 22.05 kHz, chunk sizes, num_overlap 3 and 4, normalisation, norms and
activations, the masked SCNet, and SCNet Tran (`scnet_tran`: transformer depth 1 and 2,
a rotary embedding as wide as the attention head and one narrower than it).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

FIXTURES: dict[str, dict[str, Any]] = {
    "mdx23c_vocals_target": {
        "model_type": "mdx23c",
        "seed": 21,
        "seconds": 1.5,
        "offset": 2.0,
        "rate": 44100,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 16128, "dim_f": 256, "dim_t": 64, "hop_length": 256,
                      "n_fft": 1024, "num_channels": 2, "sample_rate": 44100,
                      "min_mean_abs": 0.001},
            "model": {"act": "elu1.0", "bottleneck_factor": 2, "growth": 4,
                      "norm": "GroupNorm2", "num_blocks_per_scale": 1, "num_channels": 8,
                      "num_scales": 2, "num_subbands": 2, "scale": [2, 2]},
            "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals",
                         "use_amp": True},
            "inference": {"batch_size": 1, "dim_t": 64, "num_overlap": 3},
        },
    },
    "mdx23c_batchnorm_normalize": {
        "model_type": "mdx23c",
        "seed": 22,
        "seconds": 1.0,
        "offset": 4.0,
        "rate": 44100,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 6016, "dim_f": 192, "dim_t": 48, "hop_length": 128,
                      "n_fft": 512, "num_channels": 2, "sample_rate": 44100},
            "model": {"act": "relu", "bottleneck_factor": 4, "growth": 4,
                      "norm": "BatchNorm", "num_blocks_per_scale": 2, "num_channels": 6,
                      "num_scales": 3, "num_subbands": 3, "scale": [2, 2]},
            "training": {"instruments": ["drums", "bass"], "target_instrument": None},
            "inference": {"batch_size": 1, "num_overlap": 4, "normalize": True},
        },
    },
    "scnet_mono_22k": {
        "model_type": "scnet",
        "seed": 23,
        "seconds": 2.0,
        "offset": 1.0,
        "rate": 22050,
        "channels": 1,
        "config": {
            "audio": {"chunk_size": 16537, "num_channels": 1, "sample_rate": 22050},
            "model": {"sources": ["vocals", "drums", "other"], "audio_channels": 1,
                      "dims": [2, 6, 10], "nfft": 1024, "hop_size": 256, "win_size": 1024,
                      "normalized": False, "band_SR": [0.225, 0.372, 0.403],
                      "band_stride": [1, 2, 8], "band_kernel": [3, 2, 8],
                      "conv_depths": [2, 1, 1], "compress": 2, "conv_kernel": 5,
                      "num_dplayer": 4, "expand": 2},
            "training": {"instruments": ["vocals", "drums", "other"],
                         "target_instrument": None},
            "inference": {"batch_size": 1, "num_overlap": 4, "normalize": True},
        },
    },
    "scnet_tran_drums_bass": {
        "model_type": "scnet_tran",
        "seed": 25,
        "seconds": 1.0,
        "offset": 5.0,
        "rate": 44100,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 13230, "num_channels": 2, "sample_rate": 44100},
            "model": {"sources": ["drums", "bass"], "audio_channels": 2, "dims": [4, 8, 16],
                      "nfft": 1024, "hop_size": 256, "win_size": 1024, "normalized": True,
                      "band_SR": [0.175, 0.392, 0.433], "band_stride": [1, 4, 16],
                      "band_kernel": [3, 4, 16], "conv_depths": [2, 1, 1], "compress": 4,
                      "conv_kernel": 3, "num_dplayer": 2, "expand": 1,
                      "tran_rotary_embedding_dim": 8, "tran_depth": 1, "tran_heads": 2,
                      "tran_dim_head": 8, "tran_attn_dropout": 0.0, "tran_ff_dropout": 0.0,
                      "tran_flash_attn": False},
            "training": {"instruments": ["drums", "bass"], "target_instrument": None},
            "inference": {"batch_size": 1, "num_overlap": 2, "normalize": False},
        },
    },
    "scnet_tran_mono_vocals": {
        "model_type": "scnet_tran",
        "seed": 26,
        "seconds": 2.0,
        "offset": 6.0,
        "rate": 22050,
        "channels": 1,
        "config": {
            "audio": {"chunk_size": 11025, "num_channels": 1, "sample_rate": 22050},
            "model": {"sources": ["vocals"], "audio_channels": 1, "dims": [2, 6, 12],
                      "nfft": 512, "hop_size": 128, "win_size": 512, "normalized": False,
                      "band_SR": [0.225, 0.372, 0.403], "band_stride": [1, 2, 8],
                      "band_kernel": [3, 2, 8], "conv_depths": [1, 1, 1], "compress": 2,
                      "conv_kernel": 3, "num_dplayer": 4, "expand": 1,
                      "tran_rotary_embedding_dim": 4, "tran_depth": 2, "tran_heads": 3,
                      "tran_dim_head": 8, "tran_flash_attn": True},
            "training": {"instruments": ["vocals", "instrumental"],
                         "target_instrument": "vocals"},
            "inference": {"batch_size": 1, "num_overlap": 3, "normalize": True},
        },
    },
    "scnet_masked_vocals": {
        "model_type": "scnet_masked",
        "seed": 24,
        "seconds": 1.5,
        "offset": 3.0,
        "rate": 44100,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 22050, "num_channels": 2, "sample_rate": 44100},
            "model": {"sources": ["vocals"], "audio_channels": 2, "dims": [4, 8, 12],
                      "nfft": 2048, "hop_size": 512, "win_size": 2048, "normalized": True,
                      "band_SR": [0.175, 0.392, 0.433], "band_stride": [1, 4, 16],
                      "band_kernel": [3, 4, 16], "conv_depths": [1, 1, 1], "compress": 4,
                      "conv_kernel": 3, "num_dplayer": 2, "expand": 1},
            "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
            "inference": {"batch_size": 1, "num_overlap": 3, "normalize": False},
        },
    },
}


def _import_msst(msst: Path) -> types.SimpleNamespace:
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # only MSST's spectrogram drawing uses it
        stub = types.ModuleType("matplotlib")
        stub.pyplot = types.ModuleType("matplotlib.pyplot")  # type: ignore[attr-defined]
        sys.modules["matplotlib"] = stub
        sys.modules["matplotlib.pyplot"] = stub.pyplot  # type: ignore[attr-defined]
    sys.path.insert(0, str(msst))
    from ml_collections import ConfigDict
    from models.mdx23c_tfc_tdf_v3 import TFC_TDF_net
    from models.scnet import SCNet
    from models.scnet.scnet_masked import SCNet as SCNetMasked
    from models.scnet.scnet_tran import SCNet_Tran
    from utils.audio_utils import denormalize_audio, normalize_audio
    from utils.model_utils import demix

    return types.SimpleNamespace(
        ConfigDict=ConfigDict, TFC_TDF_net=TFC_TDF_net, SCNet=SCNet, SCNetMasked=SCNetMasked,
        SCNet_Tran=SCNet_Tran,
        demix=demix, normalize_audio=normalize_audio, denormalize_audio=denormalize_audio,
    )  # fmt: skip


def _mixture(data: Path, spec: dict[str, Any]) -> np.ndarray:
    """[channels, samples] float32 on the 24-bit grid (so mixture.flac holds it exactly)."""
    import soxr

    audio, rate = soundfile.read(str(data / "mixture.flac"), dtype="float64", always_2d=True)
    start = int(spec["offset"] * rate)
    audio = audio[start : start + int((spec["seconds"] + 0.1) * rate)]
    if spec["channels"] == 1:
        audio = audio.mean(axis=1, keepdims=True)
    if spec["rate"] != rate:
        audio = soxr.resample(audio, rate, spec["rate"])
    audio = audio[: int(spec["seconds"] * spec["rate"])]
    return (np.round(audio * 2**23) / 2**23).astype(np.float32).T.copy()


def _build(msst: types.SimpleNamespace, model_type: str, config: Any) -> torch.nn.Module:
    if model_type == "mdx23c":
        return msst.TFC_TDF_net(config)
    if model_type == "scnet":
        return msst.SCNet(**config.model)
    if model_type == "scnet_tran":
        return msst.SCNet_Tran(**config.model)
    return msst.SCNetMasked(**config.model)


def perturb_once(model: torch.nn.Module) -> None:
    """Add 0.02 x noise to every float tensor, once to a tensor that several modules
    share (e.g. the RoFormers' rotary embeddings)."""
    seen: set[int] = set()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.data_ptr() not in seen:
                seen.add(tensor.data_ptr())
                tensor.add_(0.02 * torch.randn_like(tensor))


def write_fixture(msst: types.SimpleNamespace, data: Path, out: Path, name: str) -> None:
    spec = FIXTURES[name]
    folder = out / name
    (folder / "demix").mkdir(parents=True, exist_ok=True)
    raw = spec["config"]
    config = msst.ConfigDict(raw)
    torch.manual_seed(spec["seed"])
    model = _build(msst, spec["model_type"], config)
    with torch.no_grad():
        for tensor in model.state_dict().values():  # not the masked SCNet's window
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
        for module in model.modules():  # running stats must stay positive
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.abs_().add_(0.5)
    model.eval()
    torch.save(model.state_dict(), folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    write_outputs(msst, folder, spec, raw, model, data)


def write_outputs(msst: types.SimpleNamespace, folder: Path, spec: dict[str, Any],
                  raw: dict[str, Any], model: torch.nn.Module, data: Path,
                  extra_meta: dict[str, Any] | None = None) -> None:
    """A built fixture model's mixture, forward output, MSST demix stems and meta.json."""
    mix = _mixture(data, spec)
    soundfile.write(str(folder / "mixture.flac"), mix.T, spec["rate"], subtype="PCM_24")
    mix = soundfile.read(str(folder / "mixture.flac"), dtype="float32", always_2d=True)[0].T
    chunk = raw["audio"]["chunk_size"]
    with torch.inference_mode():
        forward = model(torch.from_numpy(mix[:, :chunk].copy())[None]).numpy()
    np.save(folder / "forward_output.npy", forward.astype(np.float32))

    normalize = raw.get("inference", {}).get("normalize") is True
    source = mix
    if normalize:
        source, params = msst.normalize_audio(mix)
    config = msst.ConfigDict(raw)
    stems = msst.demix(config, model, source, torch.device("cpu"), spec["model_type"])
    names = [raw["training"]["target_instrument"]] if raw["training"].get(
        "target_instrument") else raw["training"]["instruments"]  # fmt: skip
    for stem in names:
        estimate = stems[stem]
        if normalize:
            estimate = msst.denormalize_audio(estimate, params)
        assert np.abs(estimate).max() < 1, stem  # 24-bit FLAC would clip it
        soundfile.write(str(folder / "demix" / f"{stem}.flac"), np.asarray(estimate).T,
                        spec["rate"], subtype="PCM_24")  # fmt: skip
    meta = {
        "model_type": spec["model_type"],
        "msst_commit": "ccc011abf7f89dd7922bb2888d48493b575c0289",
        "torch": torch.__version__,
        "seed": spec["seed"],
        "perturbation_std": 0.02,
        "seconds": spec["seconds"],
        "offset_seconds": spec["offset"],
        "sample_rate": spec["rate"],
        "samples": int(mix.shape[-1]),
        "chunk_size": chunk,
        "num_overlap": raw["inference"]["num_overlap"],
        "normalize": normalize,
        "stems": names,
        "forward_output_shape": list(forward.shape),
        "demix": "utils/model_utils.py::demix(config, model, mix, cpu, model_type), batch 1, "
        "no amp; normalize_audio before and denormalize_audio after when normalize is true",
        **(extra_meta or {}),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder.name}: {size / 1e6:.2f} MB, stems {names}")


def run(doc: str, fixtures: dict[str, Any], write: Any,
        data: Path = ROOT.parent / "shared/data/musdb-sample",
        out: Path = ROOT / "tests/data/msst") -> None:  # fmt: skip
    """The writers' command line: `write(msst, data, out, name)` for each fixture named."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--msst", type=Path, required=True, help="MSST checkout (work tree)")
    parser.add_argument("--data", type=Path, default=data, help="folder with mixture.flac")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("names", nargs="*", default=list(fixtures))
    args = parser.parse_args()
    msst = _import_msst(args.msst)
    torch.set_num_threads(1)
    for name in args.names:
        write(msst, args.data, args.out, name)


if __name__ == "__main__":
    run(__doc__ or "", FIXTURES, write_fixture)
