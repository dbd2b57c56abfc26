"""Conv-TasNet: Demucs v2's music variant (`network`, the `tasnet` / `tasnet_extra`
checkpoints), its arguments inferred from a state_dict (`shapes`), and the speech
variant in torchaudio's Libri2Mix layout (`librimix`).
"""

from __future__ import annotations

from typing import Any

from stemsplit.errors import ModelError
from stemsplit.models.conv_tasnet.librimix import (
    LIBRIMIX_DEFAULTS,
    LibriMixConvTasNet,
    build_librimix_conv_tasnet,
    infer_librimix_conv_tasnet_args,
)
from stemsplit.models.conv_tasnet.network import (
    ConvTasNet,
    ConvTasNetConfig,
    build_conv_tasnet,
    overlap_and_add,
)
from stemsplit.models.conv_tasnet.shapes import check_state_dict, infer_conv_tasnet_args


def build_conv_tasnet_state(
    state: dict[str, Any], config: Any = None, **card: Any
) -> ConvTasNet:
    """The registry's factory: demucs v2's args.json as `config`, else shapes inferred.

    `card` may fix `sources` and `samplerate` (a zoo card knows them; the weights don't).
    """
    if isinstance(config, dict) and "model" in config and "audio" in config:
        raise ModelError(
            "this is a Conv-TasNet state_dict but its config is an MSST yaml; pass the "
            "config published with this checkpoint (demucs v2's args.json), or none"
        )
    if isinstance(config, dict):
        return build_conv_tasnet({**config, **card})
    return build_conv_tasnet(infer_conv_tasnet_args(state, **card))


__all__ = [
    "LIBRIMIX_DEFAULTS",
    "ConvTasNet",
    "ConvTasNetConfig",
    "LibriMixConvTasNet",
    "build_conv_tasnet",
    "build_conv_tasnet_state",
    "build_librimix_conv_tasnet",
    "check_state_dict",
    "infer_conv_tasnet_args",
    "infer_librimix_conv_tasnet_args",
    "overlap_and_add",
]
