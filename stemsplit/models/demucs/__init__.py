"""The Demucs family (HTDemucs v4, HDemucs and time-only Demucs v3), checkpoint-compatible with demucs 4.1.

`build_demucs(klass, args, kwargs)` rebuilds a network from what a demucs checkpoint
stores (`serialize_model`: the class, its positional and keyword arguments); the
checkpoint's state then loads with `load_state_dict(strict=True)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

KLASSES = ("HTDemucs", "HDemucs", "Demucs")


def build_demucs(klass: str, args: tuple | list, kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate `klass` (a demucs class name) with a checkpoint's args and kwargs."""
    model_class: Callable[..., nn.Module]
    if klass == "HTDemucs":
        from stemsplit.models.demucs.htdemucs import HTDemucs as model_class
    elif klass == "HDemucs":
        from stemsplit.models.demucs.hdemucs import HDemucs as model_class
    elif klass == "Demucs":
        from stemsplit.models.demucs.time_demucs import Demucs as model_class
    else:
        raise ModelError(
            f"unknown Demucs model class {klass!r}; expected one of {', '.join(KLASSES)}"
        )
    try:
        model = model_class(*args, **kwargs)
    except (TypeError, ValueError) as err:
        raise ModelError(f"cannot build {klass} from the checkpoint's arguments: {err}") from err
    return model.eval()
