"""Write the carried BS-/Mel-RoFormer parity fixtures with MSST's own code (not part of the package).

Usage: python tools/msst_fixtures_roformer.py --msst DIR [--data DIR] [--out DIR] [NAME ...]

DIR is a checkout of ZFTurbo/Music-Source-Separation-Training at commit ccc011a (e.g.
`git --git-dir MIRROR archive ccc011a | tar -x -C /tmp/msst`); its code is imported from
there and never copied here. MSST's models import beartype, einops,
rotary-embedding-torch and librosa (mel bands); its demix imports ml_collections
(`pip install --target DEPS ml_collections` and put DEPS on PYTHONPATH). `--data`
defaults to the carried clip, tests/fixtures/music (tools/make_music_clip.py).

The networks are MSST's `BSRoformer` / `MelBandRoformer` (`models/bs_roformer/`, the
classes the public viperx / KimberleyJensen / ZFTurbo checkpoints load into), built as
MSST's `get_model_from_config` builds them (`klass(**config.model)`), at 44.1 kHz with
the real checkpoints' STFT (n_fft 2048, hop 441), `zero_dc` and flash attention, one
vocals target with `other` as the residual; they are small (dim 8, narrow mask MLPs),
not the real sizes. Each folder (tests/fixtures/<name>/, ~1.5 MB) holds what
tools/msst_fixtures_mdx23c_scnet.py writes: every float tensor perturbed by 0.02 x
noise, `config.yaml` (MSST format; `freqs_per_bands` as a plain list), `model.ckpt`
(state dict), `mixture.flac` (24-bit real music), `forward_output.npy` (the network on
the first chunk), `demix/vocals.flac` (24-bit; MSST's `demix`, batch 1, no amp) and `meta.json`,
which also records the forward's fp32-vs-fp64 agreement (how well conditioned the
random network is: the bar a test can hold it to on any CPU).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from msst_fixtures_mdx23c_scnet import perturb_once, run, write_outputs
from msst_fixtures_polarformer import _build as build_roformer

ROOT = Path(__file__).resolve().parents[1]
STFT = {"dim_freqs_in": 1025, "stft_n_fft": 2048, "stft_hop_length": 441,
        "stft_win_length": 2048, "stft_normalized": False, "zero_dc": True}  # fmt: skip
COMMON = {"dim": 8, "depth": 2, "stereo": True, "num_stems": 1, "time_transformer_depth": 1,
          "freq_transformer_depth": 1, "linear_transformer_depth": 0, "dim_head": 8,
          "heads": 2, "attn_dropout": 0.0, "ff_dropout": 0.0, "flash_attn": True,
          "mask_estimator_depth": 2, "mlp_expansion_factor": 1, **STFT}  # fmt: skip
# 1025 STFT bins in 24 bands, fine at the bottom as in the real configs; the last one
# starts at 16.5 kHz, below the clip's AAC low-pass (a band of near-silence would make
# the random network's RMSNorm amplify rounding: an ill-conditioned, CPU-bound fixture)
BANDS = [8] * 8 + [16] * 8 + [64] * 5 + [128] * 2 + [257]
AUDIO = {"chunk_size": 22050, "num_channels": 2, "sample_rate": 44100, "n_fft": 2048,
         "hop_length": 441, "dim_t": 51}  # fmt: skip
TRAINING = {"instruments": ["vocals", "other"], "target_instrument": "vocals", "use_amp": True}
INFERENCE = {"batch_size": 1, "num_overlap": 2, "dim_t": 51}

FIXTURES: dict[str, dict[str, Any]] = {
    "bs_roformer": {
        "model_type": "bs_roformer",
        "seed": 41,
        "seconds": 1.3,
        "offset": 0.4,
        "rate": 44100,
        "channels": 2,
        "config": {"audio": AUDIO, "model": {**COMMON, "freqs_per_bands": BANDS},
                   "training": TRAINING, "inference": INFERENCE},
    },
    "mel_roformer": {
        "model_type": "mel_band_roformer",
        "seed": 42,
        "seconds": 1.3,
        "offset": 1.6,
        "rate": 44100,
        "channels": 2,
        "config": {"audio": AUDIO, "model": {**COMMON, "num_bands": 16, "sample_rate": 44100},
                   "training": TRAINING, "inference": INFERENCE},
    },
}  # fmt: skip


def _fp64_agreement(model: torch.nn.Module, folder: Path, chunk: int) -> float:
    """SNR (dB) of the fp32 forward on the first chunk against the same network in fp64."""
    mix = soundfile.read(str(folder / "mixture.flac"), dtype="float64", always_2d=True)[0].T
    forward = np.load(folder / "forward_output.npy").astype(np.float64)
    with torch.inference_mode():
        exact = model.double()(torch.from_numpy(mix[:, :chunk].copy())[None]).numpy()
    model.float()
    return float(10 * np.log10(np.sum(exact**2) / np.sum((exact - forward) ** 2)))


def write_fixture(msst: types.SimpleNamespace, data: Path, out: Path, name: str) -> None:
    spec = FIXTURES[name]
    folder = out / name
    (folder / "demix").mkdir(parents=True, exist_ok=True)
    raw = spec["config"]
    torch.manual_seed(spec["seed"])
    model = build_roformer(spec["model_type"], raw["model"])  # MSST's classes, as MSST builds them
    perturb_once(model)
    model.eval()
    torch.save(model.state_dict(), folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    extra = {"num_params": sum(p.numel() for p in model.parameters()),
             "generator": "tools/msst_fixtures_roformer.py"}  # fmt: skip
    write_outputs(msst, folder, spec, raw, model, data, extra)
    meta = json.loads((folder / "meta.json").read_text())
    meta["fp32_vs_fp64_snr_db"] = round(_fp64_agreement(model, folder, AUDIO["chunk_size"]), 2)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{name}: fp32 vs fp64 {meta['fp32_vs_fp64_snr_db']} dB")


if __name__ == "__main__":
    run(__doc__ or "", FIXTURES, write_fixture, data=ROOT / "tests/fixtures/music",
        out=ROOT / "tests/fixtures")  # fmt: skip
