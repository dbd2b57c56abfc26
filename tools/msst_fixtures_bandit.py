"""Write held-out BandIt v1 (`--model_type bandit`) fixtures with MSST's own code (not part
of the package).

Usage: python tools/msst_fixtures_bandit.py --msst DIR [--data DIR] [--out DIR] [NAME ...]

DIR is a checkout of ZFTurbo/Music-Source-Separation-Training (commit ccc011a, e.g.
`git archive HEAD | tar -x -C /tmp/msst`); its code is imported from there and never
copied here. The networks are built as MSST's `get_model_from_config` builds them:
`MultiMaskMultiSourceBandSplitRNNSimple(**config.model)` from
`models.bandit.core.model`. Its imports are heavier than its maths, so:

- `models/bandit/core/__init__.py` (the training system: lightning, torchmetrics,
  asteroid) is skipped: the package is registered without running it;
- `pytorch_lightning` is a stand-in whose `LightningModule` is `nn.Module` (only a
  base class of the wrapper);
- `spafe` is an inert stand-in (only the bark / erb band layouts use it; the
  fixtures use the musical and vocal layouts);
- `torchaudio` cannot be installed here, so a shim stands in: its
  `transforms.Spectrogram` / `InverseSpectrogram` as torchaudio 2.x computes them
  with `pad=0`, `power=None` (torch.stft / torch.istft of the flattened channels,
  divided / multiplied by the window's L2 norm when `normalized`, the window a
  `window` buffer made by `window_fn(win_length, **wkwargs)`). That part is therefore
  checked against our reading of torchaudio, not torchaudio itself; BandIt v2's
  fixtures (tools/msst_fixtures.py, real torchaudio) check the same shared STFT code.
  Its `functional` (mel and triangular filterbanks) raises if called.
librosa (the musical layout's hz_to_midi / midi_to_hz) and ml_collections (demix)
are real.

Each fixture (tests/data/msst/<name>/, under ~1.5 MB) holds what the MDX23C / SCNet
ones do (tools/msst_fixtures_mdx23c_scnet.py, whose mixture cutting, demix and
meta.json this reuses): a tiny random network with every parameter perturbed by 0.02
x noise (the buffers, STFT windows and float64 band weights, stay MSST's own),
`config.yaml`, `model.ckpt` (state dict), `mixture.flac` (24-bit), `forward_output.npy`
(the first chunk), `demix/<stem>.flac` (24-bit; MSST's `demix`, batch 1, no amp) and
`meta.json`. `bandit_dnr_small` is BandIt Plus's configuration made small (stereo,
three DnR stems, 24 musical bands with their overlapping float64 weights,
bidirectional GRUs, Tanh, complex masks); `bandit_vocals_mono` is mono 44.1 kHz with
the fixed vocal layout (`musdb:vocals`, bands that tile the spectrum, no weights), a
unidirectional LSTM, LeakyReLU with arguments, real-valued masks and
`inference.normalize`; its config also asks for a 1024-sample Hamming window, hop 256,
reflect padding and no STFT normalisation, which MSST ignores (its spectral component
always gets its defaults: the Lightning base class of the wrapper calls the `__init__`
chain without arguments; the shim's `LightningModule = nn.Module` keeps that chain).
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

FIXTURES: dict[str, dict[str, Any]] = {
    "bandit_dnr_small": {
        "model_type": "bandit",
        "seed": 41,
        "seconds": 1.2,
        "offset": 2.5,
        "rate": 16000,
        "channels": 2,
        "config": {
            "audio": {"chunk_size": 8000, "num_channels": 2, "sample_rate": 16000,
                      "min_mean_abs": 0.001},
            "model": {"in_channel": 1, "stems": ["speech", "music", "effects"],
                      "band_specs": "musical", "n_bands": 24, "fs": 16000,
                      "require_no_overlap": False, "require_no_gap": True,
                      "normalize_channel_independently": False,
                      "treat_channel_as_feature": True, "n_sqm_modules": 2, "emb_dim": 8,
                      "rnn_dim": 8, "bidirectional": True, "rnn_type": "GRU", "mlp_dim": 4,
                      "hidden_activation": "Tanh", "hidden_activation_kwargs": None,
                      "complex_mask": True, "n_fft": 2048, "win_length": 2048,
                      "hop_length": 512, "window_fn": "hann_window", "wkwargs": None,
                      "power": None, "center": True, "normalized": True,
                      "pad_mode": "constant", "onesided": True},
            "training": {"instruments": ["speech", "music", "effects"],
                         "target_instrument": None, "use_amp": False},
            "inference": {"batch_size": 1, "num_overlap": 4},
        },
    },
    "bandit_vocals_mono": {
        "model_type": "bandit",
        "seed": 42,
        "seconds": 1.2,
        "offset": 4.0,
        "rate": 44100,
        "channels": 1,
        "config": {
            "audio": {"chunk_size": 11025, "num_channels": 1, "sample_rate": 44100},
            "model": {"in_channel": 1, "stems": ["vocals", "other"],
                      "band_specs": "musdb:vocals", "fs": 44100, "n_sqm_modules": 1,
                      "emb_dim": 12, "rnn_dim": 20, "bidirectional": False,
                      "rnn_type": "LSTM", "mlp_dim": 16, "hidden_activation": "LeakyReLU",
                      "hidden_activation_kwargs": {"negative_slope": 0.2},
                      "complex_mask": False, "n_fft": 2048, "win_length": 1024,
                      "hop_length": 256, "window_fn": "hamming_window",
                      "pad_mode": "reflect", "normalized": False},
            "training": {"instruments": ["vocals", "other"], "target_instrument": None},
            "inference": {"batch_size": 1, "num_overlap": 2, "normalize": True},
        },
    },
}  # fmt: skip


def _torchaudio_shim() -> types.ModuleType:
    """torchaudio.transforms.(Inverse)Spectrogram as torchaudio 2.x computes them (pad 0)."""
    from torch import nn

    class _Spectral(nn.Module):
        def __init__(self, n_fft: int = 400, win_length: int | None = None,
                     hop_length: int | None = None, pad: int = 0,
                     window_fn: Any = torch.hann_window, power: float | None = 2.0,
                     normalized: bool = False, wkwargs: dict | None = None, center: bool = True,
                     pad_mode: str = "reflect", onesided: bool = True) -> None:  # fmt: skip
            super().__init__()
            assert pad == 0 and power is None and normalized in (True, False)
            self.n_fft, self.win_length = n_fft, win_length or n_fft
            self.hop_length = hop_length or self.win_length // 2
            window = window_fn(self.win_length, **(wkwargs or {}))
            self.register_buffer("window", window)
            self.normalized, self.center, self.pad_mode = normalized, center, pad_mode
            self.onesided = onesided

        def _norm(self) -> torch.Tensor:
            return self.window.pow(2.0).sum().sqrt()

    class Spectrogram(_Spectral):
        def forward(self, waveform: torch.Tensor) -> torch.Tensor:
            shape = waveform.shape
            spec = torch.stft(waveform.reshape(-1, shape[-1]), self.n_fft, self.hop_length,
                              self.win_length, self.window, self.center, self.pad_mode,
                              False, self.onesided, return_complex=True)  # fmt: skip
            spec = spec.reshape(shape[:-1] + spec.shape[-2:])
            return spec / self._norm() if self.normalized else spec

    class InverseSpectrogram(_Spectral):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(power=None, **kwargs)

        def forward(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
            if self.normalized:
                spec = spec * self._norm()
            shape = spec.shape
            audio = torch.istft(spec.reshape(-1, shape[-2], shape[-1]), self.n_fft,
                                self.hop_length, self.win_length, self.window, self.center,
                                False, self.onesided, length=length)  # fmt: skip
            return audio.reshape(shape[:-2] + audio.shape[-1:])

    def _not_here(*_: Any, **__: Any) -> Any:
        raise NotImplementedError("torchaudio shim: filterbanks are not provided")

    ta = types.ModuleType("torchaudio")
    ta.transforms = types.ModuleType("torchaudio.transforms")  # type: ignore[attr-defined]
    ta.transforms.Spectrogram = Spectrogram  # type: ignore[attr-defined]
    ta.transforms.InverseSpectrogram = InverseSpectrogram  # type: ignore[attr-defined]
    ta.functional = types.ModuleType("torchaudio.functional")  # type: ignore[attr-defined]
    ta.functional.melscale_fbanks = _not_here  # type: ignore[attr-defined]
    ta.functional.functional = types.ModuleType(  # type: ignore[attr-defined]
        "torchaudio.functional.functional")
    ta.functional.functional._create_triangular_filterbank = _not_here  # type: ignore[attr-defined]
    for name in ["torchaudio", "torchaudio.transforms", "torchaudio.functional",
                 "torchaudio.functional.functional"]:  # fmt: skip
        module = ta
        for part in name.split(".")[1:]:
            module = getattr(module, part)
        sys.modules[name] = module
    return ta


def _import_bandit(msst_root: Path) -> Any:
    """MSST's MultiMaskMultiSourceBandSplitRNNSimple, with the stand-ins above."""
    if "torchaudio" not in sys.modules:
        _torchaudio_shim()
    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = torch.nn.Module  # type: ignore[attr-defined]
    sys.modules.setdefault("pytorch_lightning", pl)
    spafe = types.ModuleType("spafe")
    for name in ["spafe.fbanks", "spafe.fbanks.bark_fbanks", "spafe.utils",
                 "spafe.utils.converters"]:  # fmt: skip
        sys.modules.setdefault(name, types.ModuleType(name))
    converters = sys.modules["spafe.utils.converters"]
    for name in ["erb2hz", "hz2bark", "hz2erb"]:
        setattr(converters, name, None)
    sys.modules.setdefault("spafe", spafe)
    core = types.ModuleType("models.bandit.core")  # skip its __init__ (the training system)
    core.__path__ = [str(msst_root / "models" / "bandit" / "core")]
    sys.modules.setdefault("models.bandit.core", core)
    from models.bandit.core.model import MultiMaskMultiSourceBandSplitRNNSimple

    return MultiMaskMultiSourceBandSplitRNNSimple


def write_fixture(msst: types.SimpleNamespace, data: Path, out: Path, name: str) -> None:
    spec = FIXTURES[name]
    folder = out / name
    (folder / "demix").mkdir(parents=True, exist_ok=True)
    raw = spec["config"]
    msst_root = Path(next(p for p in sys.path if (Path(p) / "models" / "bandit").is_dir()))
    network = _import_bandit(msst_root)
    torch.manual_seed(spec["seed"])
    model = network(**msst.ConfigDict(raw).model)
    with torch.no_grad():  # parameters only: windows and band weights stay as MSST made them
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    model.eval()
    torch.save(model.state_dict(), folder / "model.ckpt")
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    write_outputs(msst, folder, spec, raw, model, data, {
        "num_params": sum(p.numel() for p in model.parameters()),
        "torchaudio": "shim of transforms.(Inverse)Spectrogram over torch.stft (see generator)",
        "generator": "tools/msst_fixtures_bandit.py",
    })


if __name__ == "__main__":
    run(__doc__ or "", FIXTURES, write_fixture)
