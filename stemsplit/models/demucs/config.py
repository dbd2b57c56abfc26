"""Configuration of the Demucs family: one frozen dataclass per architecture.

A demucs checkpoint stores the constructor call that made its network (`klass`, `args`,
`kwargs`: demucs 4.1's 25 to 62 flat keyword arguments). `from_kwargs` takes exactly
those names and defaults, groups them into nested parts (`dconv_*` -> `dconv`, HTDemucs'
`t_*` -> `transformer`), rejects unknown names and checks values; `to_kwargs` writes
them back. Options that only matter in training (dropout, weight decay, random shifts,
init rescaling) are kept so that a config round-trips, and ignored by the networks.
Torch-free: a model card or a checkpoint reader can build a config without torch.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar, TypeVar, Union

from stemsplit.errors import ModelError

_Config = TypeVar("_Config", bound="KwargsConfig")

# demucs' names that do not follow `dconv_<field>` / `t_<field>` / `<field>`.
_RENAMED = {
    "dconv_comp": "dconv.compress",
    "t_sparse_self_attn": "transformer.sparse.self_attn",
    "t_sparse_cross_attn": "transformer.sparse.cross_attn",
    "t_mask_type": "transformer.sparse.mask_type",
    "t_mask_random_seed": "transformer.sparse.mask_random_seed",
    "t_sparse_attn_window": "transformer.sparse.attn_window",
    "t_global_window": "transformer.sparse.global_window",
    "t_sparsity": "transformer.sparse.sparsity",
    "t_auto_sparsity": "transformer.sparse.auto_sparsity",
}


def kwarg_path(name: str) -> tuple[str, ...]:
    """Where demucs' keyword `name` lives in a config: `dconv_comp` -> (dconv, compress)."""
    if name in _RENAMED:
        return tuple(_RENAMED[name].split("."))
    if name.startswith("dconv_"):
        return ("dconv", name.removeprefix("dconv_"))
    if name.startswith("t_"):
        return ("transformer", name.removeprefix("t_"))
    return (name,)


def _matches(value: object, hint: Any) -> bool:
    """Whether `value` fits the resolved annotation `hint` (the types configs use)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    if hint is bool:  # demucs passes some flags on as group counts (int(t_group_norm))
        return isinstance(value, numbers.Integral)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:  # ints and Fractions too (segment: Fraction(39, 5))
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """`int`, `tuple[str, ...]`, `int | None`: an annotation as it is written."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def check(condition: bool, where: object, message: str) -> None:
    if not condition:
        raise ModelError(f"{type(where).__name__}: {message}")


class CheckedConfig:
    """Frozen parts whose values are checked against their annotations when built.

    Sequences become tuples (checkpoints store lists; a frozen config holds tuples).
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, item.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, item.name, value)
            check(
                _matches(value, hints[item.name]),
                self,
                f"{item.name} must be {_describe(hints[item.name])}, got {value!r}",
            )
        self._validate()

    def _validate(self) -> None:
        """Checks of values beyond their types."""


class KwargsConfig(CheckedConfig):
    """An architecture's config built from (and written back to) demucs' keywords."""

    KLASS: ClassVar[str]
    # demucs 4.1's keyword names, in its signature's order (positional args follow it).
    KWARGS: ClassVar[tuple[str, ...]]

    @classmethod
    def from_kwargs(cls: type[_Config], kwargs: Mapping[str, Any]) -> _Config:
        """The config of demucs' `KLASS(**kwargs)`; ModelError names unknown keywords."""
        unknown = [name for name in kwargs if name not in cls.KWARGS]
        if unknown:
            raise ModelError(
                f"{cls.KLASS}: unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))}"
            )
        if "sources" not in kwargs:
            raise ModelError(f"{cls.KLASS}: the `sources` argument is required")
        values = {kwarg_path(name): value for name, value in kwargs.items()}
        return _build(cls, values, None)

    @classmethod
    def from_call(cls: type[_Config], args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Config:
        """The config of `KLASS(*args, **kwargs)` (what `serialize_model` stores)."""
        if len(args) > len(cls.KWARGS):
            raise ModelError(f"{cls.KLASS}: {len(args)} positional arguments is too many")
        named = dict(zip(cls.KWARGS, args))
        twice = sorted(named.keys() & kwargs.keys())
        if twice:
            raise ModelError(f"{cls.KLASS}: {', '.join(twice)} given twice")
        return cls.from_kwargs({**named, **kwargs})

    def to_kwargs(self) -> dict[str, Any]:
        """demucs' keyword arguments for this config (tuples as lists, as demucs has them)."""
        out: dict[str, Any] = {}
        for name in self.KWARGS:
            value: Any = self
            for part in kwarg_path(name):
                value = getattr(value, part)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


def _build(kind: type[Any], values: dict[tuple[str, ...], Any], base: Any) -> Any:
    """`kind` (or `base` with changes) from values keyed by field paths, parts nested."""
    direct: dict[str, Any] = {}
    for item in fields(kind):
        if (item.name,) in values:
            direct[item.name] = values[(item.name,)]
            continue
        nested = {path[1:]: v for path, v in values.items() if path[0] == item.name}
        if nested:
            default = getattr(base, item.name) if base is not None else item.default
            if not is_dataclass(default):  # a flat field addressed as a part
                raise ModelError(f"{kind.__name__}: {item.name} has no parts")
            direct[item.name] = _build(type(default), nested, default)
    return kind(**direct) if base is None else replace(base, **direct)


@dataclass(frozen=True)
class DConvConfig(CheckedConfig):
    """The dilated residual branch inside each layer (demucs' `dconv_*` keywords)."""

    mode: int = 1  # bit 1: a DConv in each encoder layer, bit 2: in each decoder layer
    depth: int = 2  # layers per branch; negative: without dilation
    compress: float = 4  # hidden channels = channels / compress
    init: float = 1e-4  # LayerScale's initial value
    attn: float = math.inf  # layers from this index on add local attention
    lstm: float = math.inf  # layers from this index on add a BLSTM

    def _validate(self) -> None:
        check(0 <= self.mode <= 3, self, f"mode must be 0 to 3, got {self.mode}")
        check(self.compress > 0, self, f"compress must be positive, got {self.compress}")
        check(min(self.attn, self.lstm) >= 0, self, "attn and lstm must be layer indices")


@dataclass(frozen=True)
class CommonConfig(KwargsConfig):
    """Fields every Demucs generation has."""

    sources: tuple[str, ...]
    audio_channels: int = 2
    samplerate: int = 44100
    segment: float = 40  # training segment in seconds (a Fraction in released models)
    rescale: float = 0.1  # weight rescaling at init (training only)

    def _validate(self) -> None:
        check(bool(self.sources), self, "sources must list at least one stem")
        check(all(self.sources), self, f"sources must be names, got {self.sources}")
        for name in ("audio_channels", "samplerate", "segment"):
            value = getattr(self, name)
            check(value > 0, self, f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class DemucsConfig(CommonConfig):
    """Demucs v3's waveform-only U-Net (demucs 4.1 `demucs.Demucs`)."""

    KLASS: ClassVar[str] = "Demucs"
    KWARGS: ClassVar[tuple[str, ...]] = tuple(
        "sources audio_channels channels growth depth rewrite lstm_layers kernel_size stride"
        " context gelu glu norm_starts norm_groups dconv_mode dconv_depth dconv_comp"
        " dconv_attn dconv_lstm dconv_init normalize resample rescale samplerate segment".split()
    )

    channels: int = 64
    growth: float = 2.0
    depth: int = 6
    rewrite: bool = True  # 1x1 conv + GLU after each conv
    lstm_layers: int = 0  # BLSTM layers at the bottom
    kernel_size: int = 8
    stride: int = 4
    context: int = 1  # decoder rewrite conv's context (kernel 2 * context + 1)
    gelu: bool = True  # else ReLU
    glu: bool = True  # else ReLU after the rewrite
    norm_starts: int = 4  # GroupNorm from this layer on
    norm_groups: int = 4
    dconv: DConvConfig = DConvConfig(attn=4, lstm=4)  # BLSTM and attention from layer 4 on
    normalize: bool = True  # by the input's mono mean and std
    resample: bool = True  # run at twice the sample rate

    def _validate(self) -> None:
        super()._validate()
        for name in ("channels", "depth", "kernel_size", "stride", "norm_groups"):
            value = getattr(self, name)
            check(value > 0, self, f"{name} must be positive, got {value}")
        check(self.growth > 0, self, f"growth must be positive, got {self.growth}")
        check(min(self.lstm_layers, self.context) >= 0, self, "lstm_layers, context >= 0")
