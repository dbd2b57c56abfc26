"""The one list of architectures: name -> where its code lives and how to recognise it.

Read by the zoo catalog (which `architecture` a card may name), the loader (which
factory builds a checkpoint, recognised from its config or state dict) and
`stemsplit models` (families, whether the code is installed). Importing this module
is cheap: entries name their factory as `"module:function"`, imported on first use
(the modules import torch).

A new architecture is one module under `models/`, one entry here and one card.

Factories by file format (`Architecture.file_format`):
- `"msst"`: `factory(model_type: str, config: Mapping) -> nn.Module`, the whole parsed
  MSST yaml (its hyperparameters under `config_section`); the loader then loads the
  state dict strictly.
- `"demucs"`: `factory(klass: str, args, kwargs) -> nn.Module` from a Demucs package.
- `"state"`: `factory(state: Mapping[str, Tensor], config: Mapping | None, **card)`:
  the architecture's arguments are inferred from the state dict's shapes (Conv-TasNet).
- `"onnx"`: UVR MDX-Net, `factory(path: Path, params: Mapping) -> nn.Module` (the model
  opens the ONNX file itself); `"uvr-vr"`: UVR VR Architecture,
  `factory(state: Mapping[str, Tensor], params: Mapping) -> nn.Module` (the state dict
  read by zoo.checkpoints). `params` is the hash-keyed model data overlaid by a user's
  `--config` JSON (`zoo.uvr_data.resolve_params`; VR's modelparams parsed in).
The zoo loader reads a model by its architecture's file format, one reader per format
(`zoo.loader._READERS`; a test fails for a format without one); only a bare
`--checkpoint FILE`, whose architecture is not yet known, is recognised by its suffix
or contents (`zoo.local.recognise`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any, Literal

from stemsplit.errors import ModelError

FileFormat = Literal["msst", "demucs", "state", "onnx", "uvr-vr"]


@dataclass(frozen=True)
class Architecture:
    """One architecture.

    `name` is MSST's `--model_type` where MSST has the architecture (so `--model-type`
    takes the names its users know); `config_markers` are keys of the yaml's
    `config_section` that only this architecture has (all must be present), tried in
    registry order; `state_markers` are state-dict key prefixes that identify a bare
    state dict without a config.
    """

    name: str
    family: str
    factory: str  # "module:function"
    file_format: FileFormat
    description: str = ""
    config_section: str = "model"
    config_markers: tuple[str, ...] = ()
    state_markers: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    # Importable modules it needs at run time beyond torch, and the pip extra that
    # installs them (`pip install 'stemsplit-cli[EXTRA]'`).
    requires: tuple[str, ...] = ()
    extra: str = ""

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    def build_function(self) -> Callable[..., Any]:
        """The factory, imported now; ModelError when this install lacks its code."""
        module, _, function = self.factory.partition(":")
        try:
            return getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as err:
            raise ModelError(
                f"architecture {self.name}: {self.factory} cannot be imported ({err}); "
                "is this install complete (torch, and the architecture's extras)?"
            ) from err

    def installed(self) -> bool:
        """Whether its module and torch are importable, found without importing them."""
        return find_spec("torch") is not None and find_spec(self.module) is not None

    def missing(self) -> list[str]:
        """The run-time modules it needs that this install lacks (found, not imported)."""
        return [name for name in ("torch", *self.requires) if find_spec(name) is None]


_ENTRIES: tuple[Architecture, ...] = (
    Architecture(
        "demucs", "Demucs", "stemsplit.models.demucs:build_demucs", "demucs",
        "Demucs v2/v3/v4 (HTDemucs, HDemucs, time-domain Demucs) and their bags",
    ),
    # Before the plain RoFormers: their markers are a subset of these.
    Architecture(
        "bs_roformer_experimental", "RoFormer", "stemsplit.models.roformer:build_roformer",
        "msst", "BS-RoFormer with value residuals (MSST's bs_roformer_experimental)",
        config_markers=("freqs_per_bands", "use_value_residual_learning"),
    ),
    Architecture(
        "mel_band_roformer_experimental", "RoFormer", "stemsplit.models.roformer:build_roformer",
        "msst", "Mel-Band RoFormer with value residuals (MSST's mel_band_roformer_experimental)",
        config_markers=("num_bands", "use_value_residual_learning"),
    ),
    # Also before the plain RoFormers: the conformers name their depths *_conformer_depth.
    Architecture(
        "bs_conformer", "RoFormer", "stemsplit.models.roformer:build_roformer", "msst",
        "Band-Split RoFormer with conformer blocks (MSST's bs_conformer)",
        config_markers=("freqs_per_bands", "time_conformer_depth"),
    ),
    Architecture(
        "mel_band_conformer", "RoFormer", "stemsplit.models.roformer:build_roformer", "msst",
        "Mel-Band RoFormer with conformer blocks (MSST's mel_band_conformer)",
        config_markers=("num_bands", "time_conformer_depth"),
    ),
    Architecture(
        "bs_roformer", "RoFormer", "stemsplit.models.roformer:build_roformer", "msst",
        "Band-Split RoFormer (MSST checkpoints)",
        config_markers=("freqs_per_bands",),
    ),
    Architecture(
        "mel_band_roformer", "RoFormer", "stemsplit.models.roformer:build_roformer", "msst",
        "Mel-Band RoFormer (MSST checkpoints)",
        config_markers=("num_bands",),
    ),
    Architecture(
        "mdx23c", "MDX23C", "stemsplit.models.mdx23c:build_mdx23c", "msst",
        "MDX23C / TFC-TDF v3 U-Net (MSST checkpoints)",
        config_markers=("num_subbands", "num_scales", "bottleneck_factor"),
    ),
    Architecture(
        "scnet_masked", "SCNet", "stemsplit.models.scnet:build_scnet", "msst",
        "SCNet with a spectral mask head (MSST checkpoints; same yaml keys as scnet, "
        "recognised from its weights)",
        state_markers=("pos_embed_f", "mask_layer."),
    ),
    # Before scnet: scnet's markers are a subset of these (and its weights tell it too).
    Architecture(
        "scnet_tran", "SCNet", "stemsplit.models.scnet_tran:build_scnet_tran", "msst",
        "SCNet with transformer dual-path layers instead of LSTMs (MSST checkpoints)",
        config_markers=("band_SR", "dims", "tran_depth"),
        state_markers=("separation_net.dp_modules.0.time_layer.",),
    ),
    Architecture(
        "scnet", "SCNet", "stemsplit.models.scnet:build_scnet", "msst",
        "SCNet, sparse compression network (MSST checkpoints)",
        config_markers=("band_SR", "band_stride", "band_kernel", "dims"),
    ),
    Architecture(
        "htdemucs", "Demucs", "stemsplit.models.demucs.msst:build_msst_demucs", "msst",
        "HTDemucs/HDemucs as MSST trains them (yaml `model: htdemucs|hdemucs` + state dict)",
        config_section="htdemucs", config_markers=("channels",),
    ),
    Architecture(
        "bandit_v2", "BandIt", "stemsplit.models.bandit_v2:build_bandit_v2", "msst",
        "BandIt v2: speech / music / effects (MSST checkpoints, yaml `cls: Bandit` + kwargs)",
        config_section="kwargs", config_markers=("n_sqm_modules",),
    ),
    Architecture(
        "bandit", "BandIt", "stemsplit.models.bandit:build_bandit", "msst",
        "BandIt v1 (BandIt Plus): speech / music / effects (MSST checkpoints, yaml `model` "
        "with band_specs)",
        config_markers=("band_specs", "n_sqm_modules"),
    ),
    Architecture(
        "conv_tasnet", "Conv-TasNet", "stemsplit.models.conv_tasnet:build_conv_tasnet_state",
        "state", "Conv-TasNet as Demucs v2 trained it (shapes inferred from the weights)",
        state_markers=("encoder.conv1d_U.", "separator.network."),
    ),
    Architecture(
        "mdx", "UVR", "stemsplit.models.uvr.mdx:build_mdx", "onnx",
        "UVR MDX-Net ONNX models, as audio-separator runs them (onnxruntime)",
        aliases=("mdx_net",), requires=("onnxruntime",), extra="onnx",
    ),
    Architecture(
        "vr", "UVR", "stemsplit.models.uvr.vr:build_vr", "uvr-vr",
        "UVR VR Architecture models (nets and nets_new), as audio-separator runs them",
        state_markers=("stg1_low_band_net.",), aliases=("vr_arch",),
        requires=("scipy", "samplerate"), extra="vr",
    ),
)

ARCHITECTURES: dict[str, Architecture] = {entry.name: entry for entry in _ENTRIES}
_ALIASES: dict[str, str] = {
    alias: entry.name for entry in _ENTRIES for alias in entry.aliases
}


def names() -> tuple[str, ...]:
    """Every architecture name, in registry order."""
    return tuple(ARCHITECTURES)


def get(name: str) -> Architecture:
    """The architecture called `name` (or one of its aliases)."""
    entry = ARCHITECTURES.get(_ALIASES.get(name, name))
    if entry is None:
        raise ModelError(f"unknown architecture {name!r}; one of {', '.join(names())}")
    return entry


def recognise_config(config: Mapping[str, Any]) -> Architecture | None:
    """The MSST architecture whose markers a parsed yaml carries, or None."""
    for entry in _ENTRIES:
        if entry.file_format != "msst" or not entry.config_markers:
            continue
        section = config.get(entry.config_section)
        if isinstance(section, Mapping) and all(key in section for key in entry.config_markers):
            return entry
    return None


def recognise_state(keys: Iterable[str]) -> Architecture | None:
    """The architecture whose state-dict markers every appear among `keys`, or None."""
    keys = list(keys)
    for entry in _ENTRIES:
        if entry.state_markers and all(
            any(key.startswith(marker) for key in keys) for marker in entry.state_markers
        ):
            return entry
    return None


def families() -> dict[str, list[str]]:
    """Family -> architecture names, in registry order (for listings)."""
    out: dict[str, list[str]] = {}
    for entry in _ENTRIES:
        out.setdefault(entry.family, []).append(entry.name)
    return out
