"""The Demucs family (HTDemucs v4, HDemucs and time-only Demucs v3), checkpoint-compatible with demucs 4.1.

`build_demucs(klass, args, kwargs)` rebuilds a network from what a demucs checkpoint
stores (`serialize_model`: the class, its positional and keyword arguments): the
arguments become the architecture's frozen config (`demucs_config`), the config
builds the network, and the checkpoint's state then loads with
`load_state_dict(strict=True)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError
from stemsplit.models.demucs.config import DemucsConfig
from stemsplit.models.demucs.hybrid_config import HDemucsConfig, HTDemucsConfig

if TYPE_CHECKING:
    from torch import nn

DemucsFamilyConfig = HTDemucsConfig | HDemucsConfig | DemucsConfig
CONFIGS: dict[str, type[HTDemucsConfig] | type[HDemucsConfig] | type[DemucsConfig]] = {
    "HTDemucs": HTDemucsConfig,
    "HDemucs": HDemucsConfig,
    "Demucs": DemucsConfig,
}
KLASSES = tuple(CONFIGS)


def demucs_config(klass: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> DemucsFamilyConfig:
    """The config of demucs' `klass(*args, **kwargs)`; ModelError for anything it rejects."""
    if klass not in CONFIGS:
        raise ModelError(
            f"unknown Demucs model class {klass!r}; expected one of {', '.join(KLASSES)}"
        )
    try:
        return CONFIGS[klass].from_call(args, kwargs)
    except ModelError as err:
        raise ModelError(f"cannot build {klass} from the checkpoint's arguments: {err}") from err


def build_network(config: DemucsFamilyConfig) -> nn.Module:
    """The network of a config, in eval mode."""
    if isinstance(config, HTDemucsConfig):
        from stemsplit.models.demucs.htdemucs import HTDemucs

        return HTDemucs(config).eval()
    if isinstance(config, HDemucsConfig):
        from stemsplit.models.demucs.hdemucs import HDemucs

        return HDemucs(config).eval()
    from stemsplit.models.demucs.time_demucs import Demucs

    return Demucs(config).eval()


def build_demucs(klass: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> nn.Module:
    """Instantiate `klass` (a demucs class name) with a checkpoint's args and kwargs."""
    config = demucs_config(klass, args, kwargs)
    try:
        return build_network(config)
    except ValueError as err:
        raise ModelError(f"cannot build {klass} from the checkpoint's arguments: {err}") from err
