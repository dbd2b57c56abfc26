"""Build networks without drawing the random initial weights a checkpoint overwrites.

Every `nn.Linear`/`nn.Conv*`/`nn.LSTM` draws its initial weights when built; the strict
`load_state_dict` that follows replaces all of them (strict loading proves that every
parameter and persistent buffer came from the file). For the released HTDemucs the draw
is ~0.15 s of a short run's start-up. Inside `skipped_random_init()` the random fills
leave the (freshly allocated) memory as it is; any other operation runs normally.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# The in-place random fills, and the `nn.init` functions that hand themselves to
# `__torch_function__` before filling (they check for overrides on their tensor first).
_RANDOM_FILLS = frozenset(
    {
        torch.Tensor.uniform_,
        torch.Tensor.normal_,
        torch.Tensor.random_,
        torch.nn.init.uniform_,
        torch.nn.init.normal_,
        torch.nn.init.trunc_normal_,
        torch.nn.init.kaiming_uniform_,
        torch.nn.init.kaiming_normal_,
        torch.nn.init.xavier_uniform_,
        torch.nn.init.xavier_normal_,
        torch.nn.init.orthogonal_,
    }
)


class _SkipRandomFills(TorchFunctionMode):
    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if func in _RANDOM_FILLS:
            return args[0] if args else (kwargs or {}).get("tensor")
        return func(*args, **(kwargs or {}))


@contextmanager
def skipped_random_init() -> Iterator[None]:
    """Build a network whose every weight a strict `load_state_dict` will then set."""
    with torch.no_grad(), _SkipRandomFills():
        yield
