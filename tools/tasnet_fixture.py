"""Write the carried Conv-TasNet parity fixture with demucs 2.0.3's own code (not part of the package).

Usage: python tools/tasnet_fixture.py --demucs DIR [--data DIR] [--out DIR]

DIR is the facebookresearch/demucs source at 2.0.3 (commit 9602180, "version bump":
`git --git-dir MIRROR archive 9602180 | tar -x -C /tmp/demucs2`); its `demucs/tasnet.py`
(ConvTasNet, the class of the public `tasnet` / `tasnet_extra` checkpoints) and
`demucs/utils.py::apply_model` are imported from there, never copied here. Its utils
import diffq (quantised training only): an inert stand-in replaces it. `--data` is a
folder with a real-music mixture.flac (default: the carried clip, tests/fixtures/music).

The fixture (tests/fixtures/conv_tasnet/, ~1.3 MB): a small random ConvTasNet (4 sources,
stereo, 16 kHz to keep it small; the architecture has no rate-specific part), every
float tensor perturbed by 0.02 x noise so norms and biases are not at their defaults;
- `model.th`: the plain state dict, as the public checkpoints are; `args.json`: the
  constructor arguments (`segment_length` 0.5 s, so a 1.5 s track is several chunks);
- `mixture.flac`: 1.5 s of the clip, resampled to 16 kHz, 24-bit;
- `forward_output.npy`: `model(mixture[:, :segment_length][None])`, (1, 4, 2, 8000);
- `separate/<stem>.flac` (24-bit): demucs v2's separate.py flow: normalise by the mono mix's mean
  and std, `apply_model(model, wav, shifts=0, split=True, overlap=0.25)` (triangular
  cross-fades over `segment_length` chunks), de-normalise; float32, without the
  write-time peak rescale (`/ max(1.01 * peak, 1)`, a no-op below a peak of 0.99,
  which the writer asserts);
- `separate/settings.json` and `meta.json` (seed, commit, fp32-vs-fp64 agreement).
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "960218011fa1c6d0faae4cc30206f6f9e965d664"  # demucs 2.0.3
RATE = 16000
SEED = 51
ARGS = {"sources": ["drums", "bass", "other", "vocals"], "N": 32, "L": 20, "B": 32, "H": 64,
        "P": 3, "X": 3, "R": 2, "audio_channels": 2, "samplerate": RATE,
        "segment_length": RATE // 2}  # fmt: skip
SETTINGS = {"overlap": 0.25, "shifts": 0, "split": True,
            "normalize": "track mono mean/std, as demucs v2 separate.py"}  # fmt: skip


def _import_demucs(folder: Path) -> types.SimpleNamespace:
    diffq = types.ModuleType("diffq")  # only quantised training uses it
    diffq.UniformQuantizer = diffq.DiffQuantizer = None  # type: ignore[attr-defined]
    sys.modules.setdefault("diffq", diffq)
    sys.path.insert(0, str(folder))
    import demucs
    from demucs.tasnet import ConvTasNet
    from demucs.utils import apply_model

    assert demucs.__version__ == "2.0.3", demucs.__version__
    return types.SimpleNamespace(ConvTasNet=ConvTasNet, apply_model=apply_model)


def _mixture(data: Path, seconds: float, offset: float) -> np.ndarray:
    """[2, samples] float32 at RATE on the 24-bit grid (so mixture.flac holds it exactly)."""
    import soxr

    audio, rate = soundfile.read(str(data / "mixture.flac"), dtype="float64", always_2d=True)
    audio = audio[int(offset * rate) : int((offset + seconds + 0.1) * rate)]
    audio = soxr.resample(audio, rate, RATE)[: int(seconds * RATE)]
    return (np.round(audio * 2**23) / 2**23).astype(np.float32).T.copy()


def separate(demucs: types.SimpleNamespace, model: torch.nn.Module, wav: torch.Tensor
             ) -> torch.Tensor:  # fmt: skip
    """demucs v2 separate.py between load_track and the writing of the stems."""
    ref = wav.mean(0)
    wav = (wav - ref.mean()) / ref.std()
    sources = demucs.apply_model(model, wav, shifts=SETTINGS["shifts"], split=True,
                                 overlap=SETTINGS["overlap"])  # fmt: skip
    return sources * ref.std() + ref.mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demucs", type=Path, required=True, help="demucs 2.0.3 source tree")
    parser.add_argument("--data", type=Path, default=ROOT / "tests/fixtures/music")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/conv_tasnet")
    args = parser.parse_args()
    demucs = _import_demucs(args.demucs)
    torch.set_num_threads(1)
    folder: Path = args.out
    (folder / "separate").mkdir(parents=True, exist_ok=True)

    torch.manual_seed(SEED)
    model = demucs.ConvTasNet(**ARGS)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
    model.eval()
    torch.save(model.state_dict(), folder / "model.th")
    (folder / "args.json").write_text(json.dumps(ARGS, indent=1) + "\n")

    mix = _mixture(args.data, 1.5, 0.7)
    soundfile.write(str(folder / "mixture.flac"), mix.T, RATE, subtype="PCM_24")
    mix = soundfile.read(str(folder / "mixture.flac"), dtype="float32", always_2d=True)[0].T
    wav = torch.from_numpy(mix.copy())
    first = wav[:, : ARGS["segment_length"]][None]
    with torch.no_grad():
        forward = model(first)
        exact = model.double()(first.double())
        model.float()
    np.save(folder / "forward_output.npy", forward.numpy())
    with torch.no_grad():
        sources = separate(demucs, model, wav)
    assert float(sources.abs().max()) < 0.99  # where separate.py's peak rescale is a no-op
    for source, name in zip(sources, ARGS["sources"]):
        soundfile.write(str(folder / "separate" / f"{name}.flac"), source.numpy().T, RATE,
                        subtype="PCM_24")  # fmt: skip
    (folder / "separate" / "settings.json").write_text(json.dumps(SETTINGS) + "\n")

    agreement = 10 * torch.log10(exact.pow(2).sum() / (exact - forward.double()).pow(2).sum())
    meta = {"demucs_commit": COMMIT, "demucs_version": "2.0.3", "torch": torch.__version__,
            "seed": SEED, "perturbation_std": 0.02, "seconds": 1.5, "offset_seconds": 0.7,
            "sample_rate": RATE, "samples": int(mix.shape[-1]),
            "forward_output_shape": list(forward.shape),
            "fp32_vs_fp64_snr_db": round(float(agreement), 2),
            "num_params": sum(p.numel() for p in model.parameters()),
            "generator": "tools/tasnet_fixture.py"}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {size / 1e6:.2f} MB, fp32 vs fp64 {meta['fp32_vs_fp64_snr_db']} dB")


if __name__ == "__main__":
    main()
