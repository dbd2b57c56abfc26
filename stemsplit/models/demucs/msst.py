"""Demucs networks as MSST (Music-Source-Separation-Training) trains and runs them.

MSST builds its Demucs family from a yaml, not from a Demucs package: `model:` names
the class (`htdemucs`, `hdemucs` or `demucs`) and the section of that name holds its
keyword arguments; `training` gives `instruments` (the sources), `channels`,
`samplerate` and `segment` (seconds). Its checkpoints are plain state dicts with
demucs 4.1's key names (`model_drumsep.th`, `.ckpt` files), so our demucs networks
load them strictly.

MSST's HTDemucs differs from demucs 4.1's in two defaults we carry over:
`use_train_segment` is False (the network runs on whatever length it gets) and
`num_subbands` (frequency subbands folded into channels) exists; every published
config sets it to 1, the only value supported here.

MSST separates these models with `demix(..., model_type='htdemucs')`, its 'demucs'
mode (utils/model_utils.py): chunks of `training.samplerate * training.segment`
samples every `chunk // inference.num_overlap`, each read from its start and
zero-padded past the track's end, outputs summed and divided by how many chunks
cover each sample; no border, no fades. That is the recipe below (window
"uniform", padding "zeros"). `inference.normalize: true` makes MSST's inference.py
normalise the track by its mono mix's mean and std first ("track-mean-std").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe
from stemsplit.models.demucs.config import DemucsConfig
from stemsplit.models.demucs.hdemucs import HDemucs
from stemsplit.models.demucs.htdemucs import HTDemucs
from stemsplit.models.demucs.hybrid_config import HDemucsConfig, HTDemucsConfig
from stemsplit.models.demucs.time_demucs import Demucs

MSST_CLASSES = ("htdemucs", "hdemucs", "demucs")


class MsstHTDemucs(HTDemucs):
    """HTDemucs with MSST's recipe (a plain attribute, set by the factory)."""

    recipe: Recipe = None  # type: ignore[assignment]  # replaces the parent's property


class MsstHDemucs(HDemucs):
    """HDemucs with MSST's recipe (DrumSep's HTDemucs card is an HDemucs)."""

    recipe: Recipe = None  # type: ignore[assignment]


class MsstDemucs(Demucs):
    """Time-domain Demucs with MSST's recipe."""

    recipe: Recipe = None  # type: ignore[assignment]


MsstNetwork = MsstHTDemucs | MsstHDemucs | MsstDemucs
_CONFIGS: dict[str, type[HTDemucsConfig] | type[HDemucsConfig] | type[DemucsConfig]] = {
    "htdemucs": HTDemucsConfig,
    "hdemucs": HDemucsConfig,
    "demucs": DemucsConfig,
}


def _mapping(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = config.get(name)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ModelError(f"MSST Demucs config: '{name}' must be a mapping")
    return section


def _positive(section: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = section.get(key, default)
    if value is None:
        raise ModelError(f"MSST Demucs config: {where}.{key} is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ModelError(f"MSST Demucs config: {where}.{key} must be positive, got {value!r}")
    return value


def msst_class(config: Mapping[str, Any]) -> str:
    """Which Demucs class an MSST yaml builds (`model: htdemucs|hdemucs|demucs`)."""
    name = config.get("model", "htdemucs")
    if name not in MSST_CLASSES or not isinstance(config.get(name), Mapping):
        raise ModelError(
            f"MSST Demucs config: `model: {name}` must be one of {', '.join(MSST_CLASSES)} "
            "with a section of that name holding its hyperparameters"
        )
    return str(name)


def msst_recipe(config: Mapping[str, Any]) -> Recipe:
    """MSST's demix in 'demucs' mode, as a recipe (see the module docstring)."""
    training = _mapping(config, "training")
    inference = _mapping(config, "inference")
    segment = _positive(training, "segment", "training")
    samplerate = _positive(training, "samplerate", "training")
    num_overlap = int(_positive(inference, "num_overlap", "inference", 4))
    return Recipe(
        segment_samples=int(samplerate * segment),
        overlap=1.0 - 1.0 / num_overlap,
        window="uniform",
        padding="zeros",
        normalization="track-mean-std" if inference.get("normalize") is True else "none",
        batch_size=int(_positive(inference, "batch_size", "inference", 1)),
    )


def build_msst_demucs(model_type: str, config: Mapping[str, Any]) -> nn.Module:
    """The network an MSST Demucs yaml describes (`model_type` is MSST's 'htdemucs').

    Raises ModelError for a config MSST could not build either, or for options not
    implemented here (num_subbands > 1, sparse attention).
    """
    if not isinstance(config, Mapping):
        raise ModelError("MSST Demucs config must be a mapping of sections")
    name = msst_class(config)
    kwargs = dict(config[name])
    training = _mapping(config, "training")
    instruments = training.get("instruments")
    if (
        not isinstance(instruments, (list, tuple))
        or not instruments
        or not all(isinstance(item, str) for item in instruments)
    ):
        raise ModelError("MSST Demucs config: training.instruments must list the stems")
    num_subbands = kwargs.pop("num_subbands", 1)
    if name == "htdemucs":
        if num_subbands != 1:
            raise ModelError(
                f"MSST HTDemucs with num_subbands {num_subbands} is not supported (only 1)"
            )
        kwargs.setdefault("use_train_segment", False)  # MSST's default, not demucs'
    recipe = msst_recipe(config)
    extra = {
        "sources": list(instruments),
        "audio_channels": int(_positive(training, "channels", "training", 2)),
        "samplerate": int(_positive(training, "samplerate", "training")),
        "segment": _positive(training, "segment", "training"),
    }
    twice = sorted(extra.keys() & kwargs.keys())
    if twice:
        raise ModelError(
            f"MSST Demucs config: section '{name}' sets {', '.join(twice)}, "
            "which come from the training section"
        )
    try:
        network_config = _CONFIGS[name].from_kwargs({**extra, **kwargs})
    except ModelError as err:
        raise ModelError(f"MSST Demucs config: section '{name}': {err}") from err
    try:
        model = _network(network_config)
    except ValueError as err:
        raise ModelError(f"MSST Demucs config: {err}") from err
    model.recipe = recipe
    return model.eval()


def _network(config: HTDemucsConfig | HDemucsConfig | DemucsConfig) -> MsstNetwork:
    """The MSST flavour of the network `config` describes."""
    if isinstance(config, HTDemucsConfig):
        return MsstHTDemucs(config)
    if isinstance(config, HDemucsConfig):
        return MsstHDemucs(config)
    return MsstDemucs(config)
