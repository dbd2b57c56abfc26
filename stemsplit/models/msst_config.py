"""What every Music-Source-Separation-Training (MSST) yaml says beyond the network.

MSST configs have the sections `audio`, `model`, `training` and `inference`. The
network's hyperparameters live under `model` (each architecture reads its own); the
facts shared by every MSST architecture are read here, once:

- the output stems: MSST's `prefer_target_instrument` (the `target_instrument` if
  set, else `training.instruments`), and the residual stem of a one-target model;
- the inference recipe of MSST's generic `demix` and `inference.py`: chunk
  `inference.chunk_size` if present else `audio.chunk_size`, step
  `chunk // num_overlap`, linear fades, reflect border, `inference.batch_size`, and
  the track's mean/std normalisation when `inference.normalize` is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stemsplit.errors import ModelError
from stemsplit.models.base import ModelInfo, Recipe


def section(
    config: Mapping[str, Any], name: str, family: str, required: bool = False
) -> Mapping[str, Any]:
    """`config[name]` as a mapping ({} when absent and not required)."""
    if config is None:
        raise ModelError(f"{family} needs its MSST yaml config (pass --config)")
    if not isinstance(config, Mapping):
        raise ModelError(f"{family} config must be a mapping of sections (audio, model, ...)")
    value = config.get(name)
    if value is None:
        if required:
            raise ModelError(f"{family} config has no '{name}' section; use an MSST config")
        return {}
    if not isinstance(value, Mapping):
        raise ModelError(f"{family} config: '{name}' must be a mapping, got {type(value).__name__}")
    return value


def positive_int(
    values: Mapping[str, Any], key: str, default: int | None, where: str, family: str
) -> int:
    """`values[key]` (or `default`) as a positive integer; ModelError otherwise."""
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(
            f"{family} config: {where}.{key} must be a positive integer, got {value!r}"
        )
    return value


def stems(
    config: Mapping[str, Any],
    num_outputs: int | None,
    family: str,
    outputs_key: str = "the network's stem count",
) -> tuple[tuple[str, ...], str | None]:
    """Output stems (in the network's order) and the residual stem.

    As MSST's `prefer_target_instrument`: a `training.target_instrument` is the only
    output and the first other instrument is the residual (mixture minus it); else
    the outputs are `training.instruments`. `num_outputs` is what the network
    produces, checked against them when the architecture fixes it (`outputs_key`
    names the config key that sets it, for the error message).
    """
    training = section(config, "training", family, required=True)
    instruments = training.get("instruments")
    if not isinstance(instruments, (list, tuple)) or not all(
        isinstance(name, str) for name in instruments
    ):
        raise ModelError(f"{family} config: training.instruments must be a list of stem names")
    target = training.get("target_instrument")
    if target:
        if num_outputs not in (None, 1):
            raise ModelError(
                f"{family} config: target_instrument {target!r} needs a one-stem network, "
                f"this one outputs {num_outputs}"
            )
        others = [name for name in instruments if name != target]
        return (str(target),), (others[0] if others else None)
    if not instruments:
        raise ModelError(f"{family} config: training.instruments is empty")
    if num_outputs is not None and len(instruments) != num_outputs:
        raise ModelError(
            f"{family} config: {outputs_key} is {num_outputs} but "
            f"training.instruments names {len(instruments)}; they must match"
        )
    return tuple(instruments), None


def model_info(
    config: Mapping[str, Any],
    num_outputs: int | None,
    family: str,
    outputs_key: str = "the network's stem count",
) -> ModelInfo:
    """The stems, residual, sample rate and recipe this yaml gives its network."""
    sources, residual = stems(config, num_outputs, family, outputs_key)
    return ModelInfo(sources, residual, samplerate(config, family), recipe(config, family))


def samplerate(config: Mapping[str, Any], family: str) -> int:
    """`audio.sample_rate` (MSST's default 44100)."""
    return positive_int(section(config, "audio", family), "sample_rate", 44100, "audio", family)


def recipe(config: Mapping[str, Any], family: str) -> Recipe:
    """MSST's generic `demix` settings for this config (see the module docstring)."""
    audio = section(config, "audio", family)
    inference = section(config, "inference", family)
    if "chunk_size" in inference:
        segment = positive_int(inference, "chunk_size", None, "inference", family)
    else:
        segment = positive_int(audio, "chunk_size", None, "audio", family)
    num_overlap = positive_int(inference, "num_overlap", 2, "inference", family)
    normalize = inference.get("normalize", False)
    if not isinstance(normalize, bool):
        raise ModelError(f"{family} config: inference.normalize must be true or false")
    return Recipe(
        segment_samples=segment,
        overlap=1.0 - 1.0 / num_overlap,
        window="fade",
        padding="reflect-border",
        # MSST's normalize_audio: (mix - mean) / std of the mono mix, undone after.
        normalization="track-mean-std" if normalize else "none",
        batch_size=positive_int(inference, "batch_size", 1, "inference", family),
    )
