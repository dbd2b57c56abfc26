"""One run as the user asked for it: the checked option groups, frozen.

`api.build_request` makes it from named options (the CLI's flags, `separate()`'s
keywords); `api.plan_run` turns it into the one `RunPlan`. Nothing reads a request
by string key: each group is a typed, validated dataclass of `stemsplit.options`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stemsplit.options import (
    BatchOptions,
    EngineSettings,
    ModelOptions,
    OutputOptions,
    PipeInput,
    StemOptions,
)

if TYPE_CHECKING:
    from stemsplit.recipes import Recipe


@dataclass(frozen=True)
class Request:
    """The option groups of one run; `recipe` (a checked recipe file) replaces the
    models and stems when given."""

    models: ModelOptions
    stems: StemOptions = field(default_factory=StemOptions)
    engine: EngineSettings = field(default_factory=EngineSettings)
    output: OutputOptions = field(default_factory=OutputOptions)
    batch: BatchOptions = field(default_factory=BatchOptions)
    pipe: PipeInput = field(default_factory=PipeInput)
    recipe: Recipe | None = None

    @property
    def label(self) -> str:
        """The output folder under OUT/ before planning (the recipe's name, or the
        models' labels joined): what the batch's clash check needs up front."""
        if self.recipe is not None:
            return self.recipe.name
        from stemsplit.zoo.local import spec_label

        return "+".join(spec_label(spec) for spec in self.models.models)
