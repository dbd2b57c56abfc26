"""Tiny checkpoints in the upstream formats, and model cards pointing at them.

- Demucs: built with the `demucs` package itself and saved with its own
  `demucs.states.serialize_model` + `torch.save` (fp16 state, like the real files).
- MSST: a BS-/Mel-RoFormer state_dict `.ckpt` (optionally nested and `model.`-prefixed,
  as some MSST exports are) and its yaml with `!!python/tuple`.
- Conv-TasNet: a plain state_dict, as demucs v2 published.
"""

from __future__ import annotations

import hashlib
import io
import sys
import types
from pathlib import Path
from typing import Any

import torch

SOURCES = ["drums", "bass", "other", "vocals"]
# depth 4 as released: the time branch runs at T / 4**depth steps (the transformer's
# sequence length), and shallower HDemucs configs do not run even in demucs itself.
TINY_HTDEMUCS = {
    "channels": 4,
    "depth": 4,
    "nfft": 1024,
    "t_layers": 1,
    "t_heads": 2,
    "bottom_channels": 0,
    "dconv_comp": 2,
}
TINY_HDEMUCS = {"channels": 4, "depth": 4, "nfft": 1024, "dconv_comp": 2}
TINY_TASNET = {"sources": SOURCES, "N": 16, "L": 8, "B": 8, "H": 16, "P": 3, "X": 2, "R": 1}

TINY_MEL_YAML = """\
audio:
  chunk_size: 4410
  num_channels: 2
  sample_rate: 44100
model:
  dim: 16
  depth: 1
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  num_bands: 4
  dim_head: 8
  heads: 2
  attn_dropout: 0
  ff_dropout: 0
  flash_attn: false
  dim_freqs_in: 33
  sample_rate: 44100
  stft_n_fft: 64
  stft_hop_length: 16
  stft_win_length: 64
  stft_normalized: false
  mask_estimator_depth: 1
  multi_stft_resolutions_window_sizes: !!python/tuple
  - 64
  - 32
training:
  instruments: [vocals, other]
  target_instrument: vocals
inference:
  batch_size: 1
  num_overlap: 2
"""

TINY_BS_YAML = (
    TINY_MEL_YAML.replace("  num_bands: 4\n", "  freqs_per_bands: !!python/tuple\n  - 16\n  - 17\n")
    .replace("  num_stems: 1\n", "  num_stems: 4\n")
    .replace("  sample_rate: 44100\n  stft_n_fft", "  stft_n_fft")
    .replace("  instruments: [vocals, other]\n  target_instrument: vocals\n",
             "  instruments: [Drums, Bass, Other, Vocals]\n  target_instrument: null\n")
)  # fmt: skip


def _omegaconf_stub() -> None:
    """serialize_model imports omegaconf only to turn training args into containers."""
    if "omegaconf" in sys.modules:
        return
    try:
        import omegaconf  # noqa: F401
    except ModuleNotFoundError:
        stub = types.ModuleType("omegaconf")
        stub.OmegaConf = types.SimpleNamespace(  # type: ignore[attr-defined]
            to_container=lambda config, resolve=True: dict(config)
        )
        sys.modules["omegaconf"] = stub


def demucs_model(klass: str = "HTDemucs", seed: int = 0, sources: list[str] | None = None):
    """A tiny randomly initialised model of the `demucs` package."""
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    sources = sources or SOURCES
    if klass == "HTDemucs":
        return HTDemucs(sources=sources, **TINY_HTDEMUCS)
    return HDemucs(sources=sources, **TINY_HDEMUCS)


def demucs_package_bytes(model: Any) -> bytes:
    """The bytes of `torch.save(serialize_model(model, ...))`, as demucs writes them."""
    _omegaconf_stub()
    from demucs.states import serialize_model

    package = serialize_model(model, {"dset": {"name": "tiny"}, "epochs": 1}, half=True)
    buffer = io.BytesIO()
    torch.save(package, buffer)
    return buffer.getvalue()


def save_bytes(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def roformer_model(yaml_text: str, seed: int = 0):
    """A tiny RoFormer from an MSST yaml (through stemsplit's factory)."""
    from stemsplit.models.roformer import build_roformer
    from stemsplit.zoo.checkpoints import msst_architecture
    from stemsplit.zoo.safe_yaml import load_yaml_text

    config = load_yaml_text(yaml_text)
    torch.manual_seed(seed)
    model = build_roformer(msst_architecture(config).name, config)
    with torch.no_grad():  # non-trivial values everywhere, norms included
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def msst_ckpt_bytes(model: Any, nested: bool = False) -> bytes:
    """An MSST `.ckpt`: a state_dict, or (nested) {"state_dict": {"model.<key>": ...}}."""
    state = model.state_dict()
    if nested:
        state = {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def tasnet_model(seed: int = 0):
    from stemsplit.models.conv_tasnet import build_conv_tasnet

    torch.manual_seed(seed)
    return build_conv_tasnet(dict(TINY_TASNET))


def state_dict_bytes(model: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_zoo(path: Path, cards: dict[str, dict[str, Any]]) -> Path:
    """Write cards as TOML (one table per model, `files` as an array of tables)."""
    lines = []
    for name, card in cards.items():
        lines.append(f'["{name}"]')
        for key, value in card.items():
            if key != "files":
                lines.append(f"{key} = {_toml_value(value)}")
        for spec in card["files"]:
            lines.append(f'[["{name}".files]]')
            lines += [f"{key} = {_toml_value(value)}" for key, value in spec.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
