"""Write small held-out parity fixtures with MSST's own code (not part of the package).

    python tools/msst_fixtures.py MSST_GIT_DIR [--deps DIR] [--out tests/data/msst]

MSST_GIT_DIR is a git checkout (or bare mirror) of ZFTurbo's
Music-Source-Separation-Training; the files its models need are copied out of its
HEAD into a temporary folder and imported from there, never into this repository.
`--deps` is a folder with the extra packages MSST's code imports that the project
does not depend on (torchaudio and openunmix, installed with `pip install --no-deps
--target DIR`). `pytorch_lightning` (only a base class of BandIt v2), `hyper_connections`
(only used when num_residual_streams > 1) and `ml_collections` (only a type annotation
of demix) and `omegaconf` (only MSST's get_model; the scripts build the classes directly) are replaced by inert stand-ins.

Each fixture folder has ../shared/fixtures' layout, in 24-bit FLAC where that has
float WAV: config.yaml, model.ckpt (a state dict), mixture.flac (MSST is given what
the file holds), forward_output.npy (the network on the first chunk),
demix/<stem>.flac (MSST's `utils/model_utils.py::demix`, batch size 1, no autocast)
and meta.json. The models are tiny random networks with every tensor perturbed by
0.02 x noise; audio is real music from ../shared/data, resampled to 16 kHz to keep
each folder small.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import soundfile
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RATE = 16000
MSST_FILES = [
    "models/demucs4ht.py",
    "models/bs_roformer/attend.py",
    "models/bs_roformer/bs_roformer_experimental.py",
    "models/bs_roformer/mel_band_roformer_experimental.py",
    "models/bandit_v2/bandit.py",
    "models/bandit_v2/bandsplit.py",
    "models/bandit_v2/film.py",
    "models/bandit_v2/maskestim.py",
    "models/bandit_v2/tfmodel.py",
    "models/bandit_v2/utils.py",
    "utils/model_utils.py",
]
# Keys of our configs that MSST at this commit does not take (newer MSST does): the
# model is built without them. sage_attention is a speed switch.
NOT_FOR_MSST = {"sage_attention"}


def _stubs() -> None:
    """Inert stand-ins for imports that do not change the maths."""
    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = torch.nn.Module
    sys.modules.setdefault("pytorch_lightning", pl)
    hc = types.ModuleType("hyper_connections")

    def streams(num: int, disable: bool = False):
        assert num == 1 and disable, "fixtures use num_residual_streams 1"
        return None, (lambda x: x), (lambda x: x)

    hc.get_init_and_expand_reduce_stream_functions = streams
    sys.modules.setdefault("hyper_connections", hc)
    oc = types.ModuleType("omegaconf")  # only MSST's get_model uses it; we build directly
    oc.OmegaConf = None
    sys.modules.setdefault("omegaconf", oc)
    mc = types.ModuleType("ml_collections")
    mc.ConfigDict = dict
    sys.modules.setdefault("ml_collections", mc)


class Attr(dict):
    """What demix reads of an ml_collections ConfigDict: items as attributes."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError as err:
            raise AttributeError(name) from err
        return Attr(value) if isinstance(value, dict) else value


def _copy_msst(git_dir: Path, into: Path) -> None:
    for name in MSST_FILES:
        text = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"HEAD:{name}"],
                              check=True, capture_output=True, text=True).stdout  # fmt: skip
        path = into / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ["models", "models/bs_roformer", "models/bandit_v2", "utils"]:
        (into / package / "__init__.py").touch()


def _mixture(seconds: float, offset: float) -> np.ndarray:
    import soxr

    path = DATA / "musdb-sample" / "mixture.flac"
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    start = int(offset * rate)
    audio = audio[start : start + int((seconds + 0.1) * rate)]
    audio = soxr.resample(audio, rate, RATE).astype(np.float32)
    return np.ascontiguousarray(audio[: int(seconds * RATE)].T)


def _perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point() and tensor.numel():
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float64)
                tensor.add_((0.02 * noise).to(tensor.dtype))


def _write(folder: Path, config: dict, model, mix: np.ndarray, chunk: int, model_type: str,
           stems: list[str], seed: int, git_dir: Path) -> None:  # fmt: skip
    from utils.model_utils import demix

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "demix").mkdir(exist_ok=True)
    model.eval()
    torch.save(model.state_dict(), folder / "model.ckpt")
    with open(folder / "config.yaml", "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    soundfile.write(str(folder / "mixture.flac"), mix.T, RATE, subtype="PCM_24")
    mix = soundfile.read(str(folder / "mixture.flac"), dtype="float32", always_2d=True)[0].T
    with torch.inference_mode():
        forward = model(torch.from_numpy(mix[:, :chunk])[None]).numpy()
    np.save(folder / "forward_output.npy", forward.astype(np.float32))
    out = demix(Attr(config), model, mix, torch.device("cpu"), model_type)
    if isinstance(out, np.ndarray):
        out = {stems[0]: out}
    for stem, audio in out.items():
        assert np.abs(audio).max() < 1, stem  # 24-bit FLAC would clip it
        soundfile.write(str(folder / "demix" / f"{stem}.flac"), audio.T, RATE, subtype="PCM_24")
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    meta = {
        "model_type": model_type, "msst_commit": commit, "torch": torch.__version__,
        "samples": mix.shape[-1], "sample_rate": RATE, "chunk_size": chunk,
        "num_overlap": config["inference"]["num_overlap"], "stems": stems,
        "forward_output_shape": list(forward.shape), "seed": seed, "perturbation_std": 0.02,
        "num_params": sum(p.numel() for p in model.parameters()),
        "demix": {"call": f"utils/model_utils.py::demix(config, model, mix, cpu, '{model_type}')",
                  "batch_size": config["inference"]["batch_size"], "use_amp": False},
        "not_passed_to_msst": sorted(NOT_FOR_MSST & set(config.get("model") or {})),
        "generator": "tools/msst_fixtures.py",
    }  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(folder, "params", meta["num_params"], "forward", forward.shape)


def htdemucs(out: Path, git_dir: Path) -> None:
    from models.demucs4ht import HTDemucs

    torch.manual_seed(21)
    section = {"channels": 6, "growth": 2, "nfft": 4096, "depth": 2, "t_layers": 1,
               "t_heads": 2, "t_hidden_scale": 2.0, "bottom_channels": 12, "dconv_mode": 3,
               "dconv_comp": 4, "norm_starts": 2, "norm_groups": 2, "freq_emb": 0.2,
               "num_subbands": 1, "t_emb": "sin"}  # fmt: skip
    config = {
        "audio": {"chunk_size": 2 * RATE, "num_channels": 2, "sample_rate": RATE},
        "training": {
            "segment": 2,
            "samplerate": RATE,
            "channels": 2,
            "instruments": ["vocals", "other"],
            "target_instrument": None,
            "use_amp": False,
        },
        "inference": {"num_overlap": 4, "batch_size": 1},
        "model": "htdemucs",
        "htdemucs": section,
    }
    model = HTDemucs(sources=["vocals", "other"], audio_channels=2, samplerate=RATE,
                     segment=2, **section)  # fmt: skip
    _perturb(model, 21)
    _write(out / "htdemucs_small", config, model, _mixture(2.3, 0.5), 2 * RATE, "htdemucs",
           ["vocals", "other"], 21, git_dir)  # fmt: skip


def bandit(out: Path, git_dir: Path) -> None:
    from models.bandit_v2.bandit import Bandit

    torch.manual_seed(22)
    kwargs = {"in_channels": 1, "stems": ["speech", "music"], "band_type": "musical",
              "n_bands": 10, "n_sqm_modules": 1, "emb_dim": 8, "rnn_dim": 6,
              "bidirectional": True, "rnn_type": "LSTM",
              "hidden_activation": "ReLU", "mlp_dim": 6, "complex_mask": True, "use_freq_weights": True,
              "n_fft": 1024, "win_length": 1024, "hop_length": 256, "window_fn": "hann_window",
              "normalized": True, "pad_mode": "reflect", "fs": RATE}  # fmt: skip
    config = {
        "cls": "Bandit",
        "audio": {"chunk_size": 12000, "num_channels": 2, "sample_rate": RATE},
        "kwargs": kwargs,
        "training": {
            "instruments": ["speech", "music"],
            "target_instrument": None,
            "use_amp": False,
        },
        "inference": {"batch_size": 1, "num_overlap": 3},
    }
    model = Bandit(**kwargs)
    _perturb(model, 22)
    _write(out / "bandit_v2_small", config, model, _mixture(1.6, 2.5), 12000, "bandit_v2",
           ["speech", "music"], 22, git_dir)  # fmt: skip


def roformers(out: Path, git_dir: Path) -> None:
    from models.bs_roformer.bs_roformer_experimental import BSRoformer
    from models.bs_roformer.mel_band_roformer_experimental import MelBandRoformer

    common = {"dim": 16, "depth": 3, "stereo": True, "time_transformer_depth": 2,
              "freq_transformer_depth": 1, "dim_head": 8, "heads": 2, "stft_n_fft": 256,
              "stft_hop_length": 64, "stft_win_length": 256, "mlp_expansion_factor": 2,
              "flash_attn": False}  # fmt: skip
    bs = {**common, "num_stems": 2, "freqs_per_bands": [4] * 8 + [32, 65],
          "mask_estimator_depth": 2, "use_value_residual_learning": True,
          "num_residual_streams": 1, "sage_attention": True}  # fmt: skip
    mel = {**common, "num_stems": 1, "num_bands": 8, "sample_rate": RATE,
           "mask_estimator_depth": 1, "use_value_residual_learning": False}  # fmt: skip
    for name, section, klass, instruments, target, seed in [
        ("bs_roformer_experimental", bs, BSRoformer, ["vocals", "other"], None, 23),
        ("mel_band_roformer_experimental", mel, MelBandRoformer, ["vocals", "other"], "vocals", 24),
    ]:
        torch.manual_seed(seed)
        config = {
            "audio": {"chunk_size": 12800, "num_channels": 2, "sample_rate": RATE},
            "model": section,
            "training": {
                "instruments": instruments,
                "target_instrument": target,
                "use_amp": False,
            },
            "inference": {"batch_size": 1, "num_overlap": 2},
        }
        kwargs = {k: v for k, v in section.items() if k not in NOT_FOR_MSST}
        if "freqs_per_bands" in kwargs:  # a tuple, as the real configs' !!python/tuple
            kwargs["freqs_per_bands"] = tuple(kwargs["freqs_per_bands"])
        model = klass(**kwargs)
        _perturb(model, seed)
        stems = [target] if target else instruments
        _write(out / name, config, model, _mixture(1.8, 4.5), 12800, name, stems, seed,
               git_dir)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("msst", type=Path, help="MSST git dir (checkout or mirror)")
    parser.add_argument("--deps", type=Path, help="folder of extra packages (pip --target)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "msst")
    parser.add_argument("--only", nargs="*", default=["htdemucs", "bandit", "roformers"])
    args = parser.parse_args()
    git_dir = args.msst / ".git" if (args.msst / ".git").exists() else args.msst
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as temp:
        _copy_msst(git_dir, Path(temp))
        sys.path[:0] = [temp] + ([str(args.deps)] if args.deps else [])
        _stubs()
        for name in args.only:
            globals()[name](args.out, git_dir)


if __name__ == "__main__":
    main()
