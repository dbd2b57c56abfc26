"""Write held-out PolarFormer (PoPE RoFormer) fixtures with MSST's own code (not part
of the package).

Usage: PYTHONPATH=DEPS python tools/msst_fixtures_polarformer.py --msst DIR [NAME ...]

DIR is a work tree of ZFTurbo/Music-Source-Separation-Training (commit ccc011a, which
has `use_pope` since 5a209b0: `git archive HEAD | tar -x -C /tmp/msst`); DEPS a folder
with what MSST's code imports beyond the project's venv: `pip install --no-deps
--target DEPS PoPE-pytorch torch-einops-utils einx rotary-embedding-torch ml_collections`
(PoPE-pytorch 0.2.1, the package MSST's `from PoPE_pytorch import PoPE,
flash_attn_with_pope` reads). The networks are built as MSST's get_model_from_config
builds them (`BSRoformer(**config.model)`, `MelBandRoformer(**config.model)`).

Like tools/msst_fixtures_conformer.py (whose writer this reuses): a tiny random network,
every float tensor perturbed once by 0.02 x noise; PoPE's key phase biases (zeros at
init) drawn from [-7, 0.5], so some fall outside PoPE's clamp to [-2 pi, 0]. The
`bs_polarformer` checkpoint is saved in float16 (as MSST's released
`model_bs_popeformer_float16.ckpt`) and MSST's outputs come from the model with those
rounded weights loaded back. Demix runs at `inference.batch_size` 3 and 2 (MSST decides
the fades per batch).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from msst_fixtures_mdx23c_scnet import run, write_outputs

_SMALL = {"dim": 16, "depth": 2, "stereo": True, "time_transformer_depth": 1,
          "freq_transformer_depth": 1, "dim_head": 8, "heads": 2, "attn_dropout": 0,
          "ff_dropout": 0, "flash_attn": True, "stft_n_fft": 256, "stft_hop_length": 64,
          "stft_win_length": 256, "mlp_expansion_factor": 2, "use_pope": True}  # fmt: skip

FIXTURES: dict[str, dict[str, Any]] = {
    "bs_polarformer": {
        "model_type": "bs_roformer",
        "seed": 41,
        "seconds": 1.8,
        "offset": 4.5,
        "rate": 16000,
        "channels": 2,
        "float16": True,
        "config": {
            "audio": {"chunk_size": 12800, "num_channels": 2, "sample_rate": 16000},
            "model": {**_SMALL, "num_stems": 2, "freqs_per_bands": [4] * 8 + [32, 65],
                      "mask_estimator_depth": 2, "linear_transformer_depth": 1},
            "training": {"instruments": ["vocals", "other"], "target_instrument": None,
                         "use_amp": False},
            "inference": {"batch_size": 3, "num_overlap": 4},
        },
    },
    "mel_band_polarformer": {
        "model_type": "mel_band_roformer",
        "seed": 42,
        "seconds": 1.8,
        "offset": 1.0,
        "rate": 16000,
        "channels": 2,
        "float16": False,
        "config": {
            "audio": {"chunk_size": 12800, "num_channels": 2, "sample_rate": 16000},
            "model": {**_SMALL, "num_stems": 1, "num_bands": 12, "sample_rate": 16000,
                      "mask_estimator_depth": 1, "skip_connection": True},
            "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals",
                         "use_amp": False},
            "inference": {"batch_size": 2, "num_overlap": 3},
        },
    },
}  # fmt: skip


def _build(model_type: str, section: dict[str, Any]) -> torch.nn.Module:
    from models.bs_roformer import BSRoformer, MelBandRoformer

    kwargs = dict(section)
    if "freqs_per_bands" in kwargs:  # a tuple, as the real configs' !!python/tuple
        kwargs["freqs_per_bands"] = tuple(kwargs["freqs_per_bands"])
    klass = BSRoformer if model_type == "bs_roformer" else MelBandRoformer
    return klass(**kwargs)


def write_fixture(msst: types.SimpleNamespace, data: Path, out: Path, name: str) -> None:
    spec = FIXTURES[name]
    folder = out / name
    (folder / "demix").mkdir(parents=True, exist_ok=True)
    raw = spec["config"]
    torch.manual_seed(spec["seed"])
    model = _build(spec["model_type"], raw["model"])
    with torch.no_grad():
        seen: set[int] = set()  # the position embeddings are shared: perturb each once
        for key, tensor in model.state_dict().items():
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            if key.endswith("pope_embed.bias"):
                tensor.uniform_(-7.0, 0.5)
            elif tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
    assert any(".pope_embed." in key for key in model.state_dict()), "PoPE is not on"
    model.eval()
    state = model.state_dict()
    if spec["float16"]:
        state = {key: value.half() for key, value in state.items()}
        model.load_state_dict(state)  # MSST runs the rounded weights in float32
    torch.save(state, folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    write_outputs(msst, folder, spec, raw, model, data, {
        "num_params": sum(p.numel() for p in model.parameters()),
        "checkpoint_dtype": "float16" if spec["float16"] else "float32",
        "pope": "PoPE-pytorch 0.2.1 (MSST's flash_attn_with_pope, CPU path)",
        "demix": "utils/model_utils.py::demix(config, model, mix, cpu, model_type), "
                 f"inference.batch_size {raw['inference']['batch_size']}, no amp",
        "generator": "tools/msst_fixtures_polarformer.py",
    })


if __name__ == "__main__":
    run(__doc__ or "", FIXTURES, write_fixture)
