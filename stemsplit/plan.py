"""One plan per run, made once from the request and checked before any work.

`make_plan` expands presets, resolves every model's stems (from the zoo cards; a
local checkpoint is read once, here, and kept for the run), lays out the ensemble,
decides which stems are written and how each is made, and which models (and bag
members) those stems need. Everything downstream (the `Separator`, the batch, the
pipeline) takes the frozen `RunPlan` and never plans again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stemsplit.engine.ensemble import Layout, plan_ensemble, single_layout
from stemsplit.engine.pipeline import StemPlan, plan_stems
from stemsplit.errors import UsageError
from stemsplit.options import (
    EngineSettings,
    ModelOptions,
    ModelSpec,
    OutputOptions,
    StemOptions,
)

if TYPE_CHECKING:
    from stemsplit.zoo.catalog import ModelCard
    from stemsplit.zoo.loader import ModelBundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedModel:
    """One model of the run: what it is, what it outputs, its ensemble weights and the
    stems the written output needs from it (None: all of them; bags skip members that
    give none of these). `bundle` is the loaded model when planning had to read it."""

    spec: ModelSpec
    name: str
    sources: tuple[str, ...]
    residual: str | None
    samplerate: int
    weights: Mapping[str, float] = field(default_factory=dict)
    needs: tuple[str, ...] | None = None
    bundle: ModelBundle | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RunPlan:
    """What a run does, for every track: models, ensemble, stems, settings, outputs."""

    models: tuple[PlannedModel, ...]
    ensemble: str
    label: str  # the output folder under OUT/
    layout: Layout
    stems: StemPlan
    engine: EngineSettings
    output: OutputOptions
    # A recipe run (`stemsplit.recipes.plan_recipe`): its `RecipePlan` of per-step plans;
    # `models` then lists every step's models in step order, `stems` the recipe's outputs.
    recipe: RecipePlan | None = None

    def describe(self) -> dict[str, Any]:
        """Everything that decides the written audio, as `stemsplit.json` records it:
        a rerun redoes a track unless this matches (model checksums are added by the
        Separator once the files are known)."""
        if self.recipe is not None:
            return self.recipe.describe(self)
        return {
            "models": [m.name for m in self.models],
            "settings": {
                **asdict(self.engine),
                "stems": list(self.stems.written),
                "ensemble": self.ensemble if len(self.models) > 1 else None,
                "weights": [dict(m.weights) for m in self.models] if len(self.models) > 1
                else None,
                **self.output.record(),
            },
        }


# -- recipes: the steps of a chained run, each planned as a run of its own ----------

MIXTURE = "mixture"  # a step's input when it reads the track itself


@dataclass(frozen=True)
class PlannedStep:
    """A step planned: its own `RunPlan` (models, ensemble, stems written by it: the kept
    ones and those later steps read), where its models sit in the run's model list
    (`first`), and what it reads."""

    name: str
    input: tuple[str, str] | None
    plan: RunPlan
    first: int
    keep: Mapping[str, str]
    feeds: tuple[str, ...]

    @property
    def source(self) -> str:
        return MIXTURE if self.input is None else ".".join(self.input)

    @property
    def count(self) -> int:
        return len(self.plan.models)


@dataclass(frozen=True)
class RecipePlan:
    """A recipe planned once: per-step plans in order, the residual and the outputs."""

    name: str
    steps: tuple[PlannedStep, ...]
    residual: tuple[str, tuple[str, ...]] | None
    outputs: tuple[str, ...]

    @property
    def mixture_rates(self) -> list[int]:
        """The sample rates the input is decoded at (those of the steps on the mixture)."""
        return sorted({m.samplerate for s in self.steps if s.input is None
                       for m in s.plan.models})  # fmt: skip

    def chain(self) -> list[str]:
        """One line per step: `lead: uvr_mdxnet_kara_2 on vocals.vocals -> vocals as
        lead_vocals, ...`, then the residual."""
        lines = []
        for step in self.steps:
            models = "+".join(m.name for m in step.plan.models)
            kept = [f"{stem} as {out}" if stem != out else stem for stem, out in step.keep.items()]
            fed = [f"{stem} to {', '.join(s.name for s in self.steps if s.input == (step.name, stem))}"
                   for stem in step.feeds]  # fmt: skip
            if len(step.plan.models) > 1:
                weights = " ".join(f"{m.name}={_weights(m.weights)}" for m in step.plan.models)
                models += f" ({step.plan.ensemble}; weights {weights})"
            lines.append(f"{step.name}: {models} on {step.source} -> "
                         f"{'; '.join(kept + fed)}")  # fmt: skip
        if self.residual:
            lines.append(f"{self.residual[0]}: mixture - {' - '.join(self.residual[1])}")
        return lines

    def describe(self, run: RunPlan) -> dict[str, Any]:
        """The record of a recipe run (`stemsplit.json`): the chain, each step's models,
        ensemble and weights, and the settings shared by every step."""
        output = run.output
        steps = []
        for step in self.steps:
            multi = len(step.plan.models) > 1
            steps.append({
                "name": step.name,
                "input": step.source,
                "models": [m.name for m in step.plan.models],
                "ensemble": step.plan.ensemble if multi else None,
                "weights": [dict(m.weights) for m in step.plan.models] if multi else None,
                "stems": list(step.plan.stems.written),
                "keep": dict(step.keep),
                "feeds": {stem: [s.name for s in self.steps if s.input == (step.name, stem)]
                          for stem in step.feeds},
            })  # fmt: skip
        return {
            "models": [m.name for m in run.models],
            "recipe": {
                "name": self.name,
                "steps": steps,
                "residual": {"name": self.residual[0], "of": list(self.residual[1])}
                if self.residual else None,
            },
            "settings": {
                **asdict(run.engine),
                "stems": list(self.outputs),
                "chain": self.chain(),  # a changed chain redoes the track
                **output.record(),
            },
        }  # fmt: skip


def _weights(table: Mapping[str, float]) -> str:
    if not table:
        return "1"
    if set(table) == {"*"}:
        return f"{table['*']:g}"
    return ",".join(f"{stem}:{w:g}" for stem, w in table.items())



def make_plan(
    models: ModelOptions,
    stems: StemOptions,
    engine: EngineSettings,
    output: OutputOptions,
    load_checkpoint: Callable[[ModelSpec, list[str] | None], Any] | None = None,
) -> RunPlan:
    """Plan a run. Zoo models are planned from their cards (nothing downloaded);
    a checkpoint is loaded through `load_checkpoint(spec, stems)` (the zoo loader by
    default) because only its file says what it outputs."""
    from stemsplit.zoo.catalog import expand_models, get_card
    from stemsplit.zoo.local import spec_label

    specs = list(models.models)
    label = "+".join(spec_label(spec) for spec in specs)
    requested_names: list[Any] = [s.name if s.name is not None else s for s in specs]
    expanded = expand_models(requested_names, models.weights, models.ensemble)
    stem_options = stems
    if expanded.stems and not stems.stems and not stems.two_stems:
        stem_options = StemOptions(tuple(expanded.stems), None, stems.other_method)
    if len(specs) == 1 and specs[0].name is not None:
        label = expanded.label
    wanted = _wanted(stem_options)
    loader = load_checkpoint or _load_checkpoint
    planned = []
    for item, weights in zip(expanded.names, expanded.weights):
        spec = item if isinstance(item, ModelSpec) else ModelSpec(name=item)
        planned.append(_head(spec, weights, wanted, loader, get_card))
    layout, stem_plan = _layout(planned, stem_options, expanded.ensemble)
    if len(planned) > 1:
        kept = _needed(planned, layout, stem_plan)
        if len(kept) < len(planned):  # the layout of the models that remain
            planned = kept
            layout, stem_plan = _layout(planned, stem_options, expanded.ensemble)
    # `--two-stems X --keep no_X`: the pair is planned (the residual needs X), one written
    stem_plan = replace(stem_plan, written=stems.written(stem_plan.written))
    if len(planned) > 1:
        planned = [_with_needs(m, layout.needs(i, stem_plan.needed))
                   for i, m in enumerate(planned)]  # fmt: skip
    else:
        planned = [_with_needs(planned[0], stem_plan.needed)]
    return RunPlan(tuple(planned), expanded.ensemble, label, layout, stem_plan, engine, output)


def _wanted(stems: StemOptions) -> list[str] | None:
    """Stems asked for up front (lets bags skip members before loading them)."""
    if stems.two_stems and stems.other_method == "minus":
        return [stems.two_stems]
    return list(stems.stems) if stems.stems else None


def _load_checkpoint(spec: ModelSpec, stems: list[str] | None) -> Any:
    from stemsplit.zoo.loader import load_bundle

    return load_bundle(checkpoint=spec.checkpoint, config=spec.config, stems=stems,
                       model_type=spec.model_type)  # fmt: skip


def _head(spec: ModelSpec, weights: Mapping[str, float], wanted: list[str] | None,
          loader: Callable[[ModelSpec, list[str] | None], Any],
          get_card: Callable[[str], ModelCard]) -> PlannedModel:  # fmt: skip
    """A model's outputs: from its card, its ready bundle, or its checkpoint (loaded)."""
    if spec.name is not None:
        card = get_card(spec.name)
        return PlannedModel(ModelSpec(name=card.name), card.name, tuple(card.sources),
                            card.residual, card.samplerate, weights)  # fmt: skip
    bundle = spec.bundle if spec.bundle is not None else loader(spec, wanted)
    return PlannedModel(spec, str(bundle.name), tuple(bundle.sources), bundle.residual,
                        int(bundle.samplerate), weights, bundle=bundle)  # fmt: skip


def _layout(
    planned: Sequence[PlannedModel], stems: StemOptions, ensemble: str
) -> tuple[Layout, StemPlan]:
    if len(planned) == 1:
        model = planned[0]
        plan = plan_stems(model.sources, model.residual, stems.stems, stems.two_stems,
                          stems.other_method)  # fmt: skip
        return single_layout(model.sources), plan
    requested = [*(stems.stems or ()), *([stems.two_stems] if stems.two_stems else [])]
    layout = plan_ensemble([(m.sources, m.residual) for m in planned], requested,
                           [m.weights for m in planned], ensemble)  # fmt: skip
    plan = plan_stems(layout.stems, None, stems.stems, stems.two_stems, stems.other_method)
    return layout, plan


def _needed(planned: list[PlannedModel], layout: Layout, plan: StemPlan) -> list[PlannedModel]:
    """The models some written stem needs: the others are neither downloaded nor run."""
    kept = []
    for index, model in enumerate(planned):
        if layout.needs(index, plan.needed):
            kept.append(model)
        else:
            log.info("%s: no requested stem needs it; not run", model.name)
    if not kept:
        raise UsageError("no model of the ensemble produces the requested stems")
    return kept


def _with_needs(model: PlannedModel, need: set[str]) -> PlannedModel:
    needs = None if not need or need >= set(model.sources) else tuple(
        s for s in model.sources if s in need
    )
    return replace(model, needs=needs)
