"""Write held-out BS-/Mel-Band Conformer fixtures with MSST's own code (not part of the package).

Usage: python tools/msst_fixtures_conformer.py --msst DIR [--data DIR] [--out DIR] [NAME ...]

DIR is a checkout of ZFTurbo/Music-Source-Separation-Training (commit ccc011a, e.g.
`git archive HEAD | tar -x -C /tmp/msst`); its code is imported from there and never
copied here. MSST's models import beartype, einops, rotary-embedding-torch and librosa
(mel bands); its demix imports ml_collections. The networks are built as MSST's
`get_model_from_config` builds them (`BSConformer(**config.model)`,
`MelBandConformer(**config.model)`, both from `models.bs_roformer`), minus the keys in
NOT_FOR_MSST.

Each fixture (tests/data/msst/<name>/, under ~1.5 MB) holds what the MDX23C / SCNet
ones do (tools/msst_fixtures_mdx23c_scnet.py, whose mixture cutting this reuses): a
tiny random network with every float tensor perturbed by 0.02 x noise (BatchNorm
running variances kept positive), `config.yaml`, `model.ckpt` (state dict),
`mixture.flac` (24-bit), `forward_output.npy` (the first chunk), `demix/<stem>.flac`
(24-bit; MSST's `demix`, batch 1, no amp) and `meta.json`. Between them they exercise: the
linear-attention transformer before each block, skip connections, 2 stems and one
target with a residual, stereo 16 kHz and mono 22.05 kHz, several kernel sizes,
expansion factors and mask-estimator depths.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from msst_fixtures_mdx23c_scnet import perturb_once, run, write_outputs

ROOT = Path(__file__).resolve().parents[1]
# MSST's conformer constructors do not take it, though its conformer configs carry it;
# our configs keep it (stemsplit accepts and ignores it), MSST's model is built without.
NOT_FOR_MSST = {"sage_attention"}

FIXTURES: dict[str, dict[str, Any]] = {
    "bs_conformer_linear_skip": {
        "model_type": "bs_conformer",
        "seed": 31,
        "seconds": 1.8,
        "offset": 3.5,
        "rate": 16000,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 12800, "num_channels": 2, "sample_rate": 16000},
            "model": {"dim": 16, "depth": 2, "stereo": True, "num_stems": 2,
                      "time_conformer_depth": 1, "freq_conformer_depth": 2,
                      "linear_conformer_depth": 1, "freqs_per_bands": [4] * 8 + [32, 65],
                      "dim_head": 8, "heads": 2, "attn_dropout": 0, "ff_dropout": 0,
                      "flash_attn": True, "stft_n_fft": 256, "stft_hop_length": 64,
                      "stft_win_length": 256, "stft_normalized": False,
                      "mask_estimator_depth": 2, "mlp_expansion_factor": 2, "ff_mult": 2,
                      "conv_expansion_factor": 2, "conv_kernel_size": 7,
                      "skip_connection": True, "sage_attention": False},
            "training": {"instruments": ["vocals", "other"], "target_instrument": None,
                         "use_amp": False},
            "inference": {"batch_size": 1, "num_overlap": 2},
        },
    },
    "mel_band_conformer_mono_22k": {
        "model_type": "mel_band_conformer",
        "seed": 32,
        "seconds": 1.8,
        "offset": 5.0,
        "rate": 22050,
        "channels": 1,
        "config": {
            "audio": {"chunk_size": 16384, "num_channels": 1, "sample_rate": 22050},
            "model": {"dim": 16, "depth": 2, "stereo": False, "num_stems": 1,
                      "time_conformer_depth": 2, "freq_conformer_depth": 1, "num_bands": 12,
                      "dim_head": 8, "heads": 2, "attn_dropout": 0, "ff_dropout": 0,
                      "flash_attn": False, "sample_rate": 22050, "stft_n_fft": 512,
                      "stft_hop_length": 128, "stft_win_length": 512,
                      "mask_estimator_depth": 2, "mlp_expansion_factor": 1, "ff_mult": 3,
                      "conv_expansion_factor": 1, "conv_kernel_size": 5,
                      "match_input_audio_length": False},
            "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals",
                         "use_amp": False},
            "inference": {"batch_size": 1, "num_overlap": 3},
        },
    },
}  # fmt: skip


def _build(model_type: str, section: dict[str, Any]) -> torch.nn.Module:
    from models.bs_roformer import BSConformer, MelBandConformer

    kwargs = {k: v for k, v in section.items() if k not in NOT_FOR_MSST}
    if "freqs_per_bands" in kwargs:  # a tuple, as the real configs' !!python/tuple
        kwargs["freqs_per_bands"] = tuple(kwargs["freqs_per_bands"])
    klass = BSConformer if model_type == "bs_conformer" else MelBandConformer
    return klass(**kwargs)


def write_fixture(msst: types.SimpleNamespace, data: Path, out: Path, name: str) -> None:
    spec = FIXTURES[name]
    folder = out / name
    (folder / "demix").mkdir(parents=True, exist_ok=True)
    raw = spec["config"]
    torch.manual_seed(spec["seed"])
    model = _build(spec["model_type"], raw["model"])
    perturb_once(model)
    with torch.no_grad():
        for module in model.modules():  # running stats must stay positive
            if isinstance(module, torch.nn.BatchNorm1d):
                assert module.running_var is not None
                module.running_var.abs_().add_(0.5)
    model.eval()
    torch.save(model.state_dict(), folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    write_outputs(msst, folder, spec, raw, model, data, {
        "num_params": sum(p.numel() for p in model.parameters()),
        "not_passed_to_msst": sorted(NOT_FOR_MSST & set(raw["model"])),
        "generator": "tools/msst_fixtures_conformer.py",
    })


if __name__ == "__main__":
    run(__doc__ or "", FIXTURES, write_fixture)
