"""BS-RoFormer and Mel-Band RoFormer networks (and their experimental and conformer
variants) that load MSST checkpoints strictly.

`build_roformer(architecture, config)` takes a whole parsed MSST yaml (sections
audio, model, training, inference) and returns the network with the model
protocol's metadata (models/base.py). Loading weights is the caller's job:
`model.load_state_dict(torch.load(path, weights_only=True))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError
from stemsplit.models import msst_config

if TYPE_CHECKING:
    from stemsplit.models.roformer.network import RoformerNetwork

ARCHITECTURES = (
    "bs_roformer",
    "mel_band_roformer",
    "bs_roformer_experimental",
    "mel_band_roformer_experimental",
    "bs_conformer",
    "mel_band_conformer",
)


def build_roformer(architecture: str, config: Mapping[str, Any]) -> RoformerNetwork:
    """Build an untrained BS-/Mel-Band RoFormer (or Conformer) from a parsed MSST config.

    Raises ModelError for an unknown architecture, unknown model keys or
    inconsistent settings (stems, channels, bands).
    """
    from stemsplit.models.roformer import config as parse
    from stemsplit.models.roformer.bs_roformer import BSRoformer
    from stemsplit.models.roformer.conformer import BSConformer, MelBandConformer
    from stemsplit.models.roformer.mel_band_roformer import MelBandRoformer

    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"unknown RoFormer architecture {architecture!r}; use one of {ARCHITECTURES}"
        )
    model = msst_config.section(config, "model", "RoFormer", required=True)
    audio = msst_config.section(config, "audio", "RoFormer")

    band_split = architecture.startswith("bs_")
    block = None
    if architecture.endswith("_conformer"):
        conformer = parse.bs_conformer_config if band_split else parse.mel_band_conformer_config
        parsed, block = conformer(model)
    else:
        roformer = parse.bs_roformer_config if band_split else parse.mel_band_roformer_config
        parsed = roformer(model, experimental=architecture.endswith("_experimental"))
    channels = audio.get("num_channels", parsed.trunk.audio_channels)
    if channels != parsed.trunk.audio_channels:
        raise ModelError(
            f"RoFormer config: audio.num_channels {channels} disagrees with model.stereo "
            f"{parsed.trunk.stereo}; fix the config"
        )
    info = msst_config.model_info(config, parsed.trunk.num_stems, "RoFormer", "model.num_stems")
    if block is not None:
        if band_split:
            return BSConformer(parsed, block, info)  # type: ignore[arg-type]
        return MelBandConformer(parsed, block, info)  # type: ignore[arg-type]
    if band_split:
        return BSRoformer(parsed, info)  # type: ignore[arg-type]
    return MelBandRoformer(parsed, info)  # type: ignore[arg-type]


__all__ = ["ARCHITECTURES", "build_roformer"]
