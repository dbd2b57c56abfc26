"""BS-RoFormer and Mel-Band RoFormer networks that load MSST checkpoints strictly.

`build_roformer(architecture, config)` takes a whole parsed MSST yaml (sections
audio, model, training, inference) and returns the network with the model
protocol's metadata (models/base.py). Loading weights is the caller's job:
`model.load_state_dict(torch.load(path, weights_only=True))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe

if TYPE_CHECKING:
    from stemsplit.models.roformer.network import RoformerNetwork

ARCHITECTURES = ("bs_roformer", "mel_band_roformer")


def _section(config: Mapping[str, Any], name: str, required: bool = False) -> Mapping[str, Any]:
    section = config.get(name)
    if section is None:
        if required:
            raise ModelError(f"RoFormer config has no '{name}' section; use an MSST config")
        return {}
    if not isinstance(section, Mapping):
        raise ModelError(
            f"RoFormer config: '{name}' must be a mapping, got {type(section).__name__}"
        )
    return section


def _stems(training: Mapping[str, Any], num_stems: int) -> tuple[tuple[str, ...], str | None]:
    """Output stems and the residual stem, as MSST's `prefer_target_instrument`."""
    instruments = training.get("instruments")
    if not isinstance(instruments, (list, tuple)) or not all(
        isinstance(name, str) for name in instruments
    ):
        raise ModelError("RoFormer config: training.instruments must be a list of stem names")
    target = training.get("target_instrument")
    if target:
        if num_stems != 1:
            raise ModelError(
                f"RoFormer config: target_instrument {target!r} needs model.num_stems 1, "
                f"got {num_stems}"
            )
        others = [name for name in instruments if name != target]
        return (str(target),), (others[0] if others else None)
    if len(instruments) != num_stems:
        raise ModelError(
            f"RoFormer config: model.num_stems is {num_stems} but training.instruments "
            f"names {len(instruments)} stems; they must match"
        )
    return tuple(instruments), None


def _positive_int(section: Mapping[str, Any], key: str, default: int | None, where: str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(
            f"RoFormer config: {where}.{key} must be a positive integer, got {value!r}"
        )
    return value


def build_roformer(architecture: str, config: Mapping[str, Any]) -> RoformerNetwork:
    """Build an untrained BS-/Mel-Band RoFormer from a parsed MSST config.

    Raises ModelError for an unknown architecture, unknown model keys or
    inconsistent settings (stems, channels, bands).
    """
    from stemsplit.models.roformer.bs_roformer import BSRoformer
    from stemsplit.models.roformer.config import bs_roformer_config, mel_band_roformer_config
    from stemsplit.models.roformer.mel_band_roformer import MelBandRoformer
    from stemsplit.models.roformer.network import ModelInfo

    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"unknown RoFormer architecture {architecture!r}; use one of {ARCHITECTURES}"
        )
    if not isinstance(config, Mapping):
        raise ModelError("RoFormer config must be a mapping of sections (audio, model, ...)")
    model = _section(config, "model", required=True)
    audio = _section(config, "audio")
    training = _section(config, "training", required=True)
    inference = _section(config, "inference")

    parsed = (bs_roformer_config if architecture == "bs_roformer" else mel_band_roformer_config)(
        model
    )
    channels = audio.get("num_channels", parsed.trunk.audio_channels)
    if channels != parsed.trunk.audio_channels:
        raise ModelError(
            f"RoFormer config: audio.num_channels {channels} disagrees with model.stereo "
            f"{parsed.trunk.stereo}; fix the config"
        )
    sources, residual = _stems(training, parsed.trunk.num_stems)
    num_overlap = _positive_int(inference, "num_overlap", 2, "inference")
    recipe = Recipe(
        segment_samples=_positive_int(audio, "chunk_size", None, "audio"),
        overlap=1.0 - 1.0 / num_overlap,
        window="fade",
        padding="reflect-border",
        normalization="none",
        batch_size=_positive_int(inference, "batch_size", 1, "inference"),
    )
    info = ModelInfo(
        sources=sources,
        residual=residual,
        samplerate=_positive_int(audio, "sample_rate", 44100, "audio"),
        recipe=recipe,
    )
    if architecture == "bs_roformer":
        return BSRoformer(parsed, info)  # type: ignore[arg-type]
    return MelBandRoformer(parsed, info)  # type: ignore[arg-type]


__all__ = ["ARCHITECTURES", "build_roformer"]
