"""The model protocol: what the engine may assume of every architecture.

The engine knows recipes, never architectures. A new architecture is a new module
that produces an `nn.Module` with the attributes below, a loader entry in the zoo
and a model card; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast, runtime_checkable

if TYPE_CHECKING:  # torch is imported lazily everywhere else
    import torch
    from torch import nn

WindowKind = Literal["triangle", "fade", "uniform"]
PaddingPolicy = Literal["context", "reflect-border", "zeros"]
Normalization = Literal["track-mean-std", "none"]


@dataclass(frozen=True)
class Recipe:
    """A model's reference inference settings (how its authors chunk a track).

    - `segment_samples`: chunk length at the model's sample rate.
    - `overlap`: fraction of a chunk shared with the next (Demucs 0.25; MSST
      1 - 1/num_overlap).
    - `window`: "triangle" (Demucs' apply_model: triangle normalised by its max) or
      "fade" (MSST demix: linear fades of segment // 10, none at the track's ends) or
      "uniform" (MSST demix in its 'demucs' mode: every chunk weighs 1).
    - `padding`: "context" (Demucs: a chunk is padded to the model's valid length
      with the real audio around it, zeros past the track's ends) or
      "reflect-border" (MSST: reflect-pad the track by segment - step on both ends,
      reflect/zero-pad the last short chunk) or "zeros" (MSST demix in its 'demucs'
      mode: every chunk is a whole segment read from its start, zeros past the
      track's end; no border).
    - `normalization`: "track-mean-std" (Demucs: divide by the mono mix's std after
      removing its mean, undo after) or "none".
    - `batch_size`: chunks per forward call by default.
    """

    segment_samples: int
    overlap: float
    window: WindowKind
    padding: PaddingPolicy
    normalization: Normalization
    batch_size: int = 1


@runtime_checkable
class SeparationModel(Protocol):
    """What every architecture exposes (as attributes of its `nn.Module`).

    `forward(mix)` maps `mix: [batch, channels, time]` to
    `[batch, stems, channels, time]` on exactly one chunk, always with a stems axis.
    `valid_length(n)` is the input length the network needs for `n` samples of
    output (>= n); the engine pads chunks to it (Demucs' TensorChunk.padded).
    """

    sources: list[str]
    samplerate: int
    audio_channels: int
    recipe: Recipe
    # A stem the network does not output but that is defined as mixture minus the
    # sum of its outputs (one-target vocal models: "instrumental"/"other"), or None.
    residual: str | None

    def valid_length(self, length: int) -> int: ...

    def __call__(self, mix: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SelfChunking(Protocol):
    """A network that frames the whole track itself, as audio-separator runs UVR's
    MDX-Net and VR models (their recipe is one whole-track chunk): the user's
    `--overlap`/`--batch-size`/`--tta` are its own framing's, handed over once when the
    run's models are loaded (`engine.bundle.apply_engine_settings`); the engine's
    chunking then takes none of them. They apply over the model's config, never over an
    earlier run's flags (a network reused by a later run takes that run's only); None
    (and `tta=False`, the flag's default) leaves the config's value."""

    def apply_engine_settings(self, overlap: float | None = None, batch_size: int | None = None,
                              tta: bool | None = None) -> None: ...  # fmt: skip


@dataclass(frozen=True)
class ModelInfo:
    """The protocol's metadata besides the tensors, as a config gives it (the MSST
    families build one from their yaml: `msst_config.model_info`)."""

    sources: tuple[str, ...]
    residual: str | None
    samplerate: int
    recipe: Recipe

    def attach(self, model: nn.Module) -> None:
        """Set `sources`, `residual`, `samplerate` and `recipe` on `model`."""
        for name, value in [("sources", list(self.sources)), ("residual", self.residual),
                            ("samplerate", self.samplerate), ("recipe", self.recipe)]:  # fmt: skip
            setattr(model, name, value)


def as_separation_model(model: nn.Module) -> SeparationModel:
    """`model` typed as the protocol it implements (every architecture's module has
    these attributes; `nn.Module.__getattr__` alone types them as tensors/modules).
    No runtime check: the same object is returned."""
    return cast(SeparationModel, model)


INSTRUMENTAL = "instrumental"


def residual_alias(sources: tuple[str, ...] | list[str], residual: str | None) -> str | None:
    """`instrumental` for a vocals-only model's residual, whatever its config calls it
    (MSST configs say `other`): the name UVR and audio-separator users ask for."""
    if residual and [s.lower() for s in sources] == ["vocals"] and residual != INSTRUMENTAL:
        return INSTRUMENTAL
    return None
