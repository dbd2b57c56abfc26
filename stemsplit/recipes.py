"""Recipes: chained and routed separations, declared in TOML and planned once.

A recipe is a list of named steps. Each step runs a model (a zoo name, a preset, a list
of models for an ensemble, local `checkpoint` files, one or a list, with a `config` for
each that needs one, or names and files together) on the mixture or on a
stem of an earlier step (`input = "vocals.vocals"`: step `vocals`, its stem `vocals`),
and keeps some of its stems under output names (`keep = { vocals = "lead_vocals" }`).
An optional `residual` writes the mixture minus chosen outputs (`other` = mixture -
drums - bass - vocals), so a routed set sums to the mixture.

Shipped recipes live in `weights/recipes.toml`; `--recipe FILE` reads a user's file:
one table per recipe (`[karaoke]` with `[[karaoke.steps]]`), or a file with top-level
`[[steps]]` that is one recipe named after the file.

`load_recipe` reads and checks the declaration (names, references, output names) with
no model card read; `plan_recipe` checks it against the models (known models, stems
each step keeps or feeds) and returns the run's one `RunPlan`, its `recipe` field the
`RecipePlan` of per-step `RunPlan`s. Errors name the recipe and the step.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stemsplit.errors import StemsplitError, UnknownStem, UsageError
from stemsplit.options import (
    EngineSettings,
    ModelOptions,
    ModelSpec,
    OutputOptions,
    StemOptions,
)
from stemsplit.plan import MIXTURE, PlannedStep, RecipePlan, RunPlan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

RECIPES_FILE = "recipes.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")
_OUTPUT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_STEP_KEYS = {"name", "model", "checkpoint", "config", "model_type", "ensemble", "weights",
              "input", "keep"}  # fmt: skip
_RECIPE_KEYS = {"description", "why", "steps", "residual", "aliases"}


@dataclass(frozen=True)
class Step:
    """One step as declared: which model(s), on what, keeping which stems as what."""

    name: str
    models: tuple[str, ...] = ()
    checkpoints: tuple[Path, ...] = ()
    configs: tuple[Path, ...] = ()  # paired with the checkpoints that need one
    model_type: str | None = None
    ensemble: str | None = None
    weights: Any = None
    input: tuple[str, str] | None = None  # (step, stem); None: the mixture
    keep: Mapping[str, str] = field(default_factory=dict)  # stem -> output name

    @property
    def source(self) -> str:
        return MIXTURE if self.input is None else ".".join(self.input)

    @property
    def checkpoint(self) -> Path | None:
        """The first checkpoint file, or None."""
        return self.checkpoints[0] if self.checkpoints else None

    @property
    def model_label(self) -> str:
        return "+".join([*self.models, *map(str, self.checkpoints)])


@dataclass(frozen=True)
class Recipe:
    """A checked recipe declaration (no model read yet)."""

    name: str
    steps: tuple[Step, ...]
    residual: tuple[str, tuple[str, ...]] | None = None  # (output name, outputs it subtracts)
    description: str = ""
    why: str = ""
    aliases: tuple[str, ...] = ()
    origin: str = ""

    @property
    def outputs(self) -> tuple[str, ...]:
        """The written stems' names, in order: each step's kept stems, then the residual."""
        names = tuple(out for step in self.steps for out in step.keep.values())
        return names + ((self.residual[0],) if self.residual else ())

    def feeds(self, step: str) -> tuple[str, ...]:
        """The stems of `step` that later steps read."""
        return tuple(dict.fromkeys(s.input[1] for s in self.steps
                                   if s.input is not None and s.input[0] == step))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """Plain data for `stemsplit recipes` (`--json`) and the Python API."""
        return {
            "name": self.name,
            "description": self.description,
            "why": self.why,
            "aliases": list(self.aliases),
            "origin": self.origin,
            "outputs": list(self.outputs),
            "steps": [
                {"name": s.name, "model": s.model_label, "input": s.source,
                 "keep": dict(s.keep), "ensemble": s.ensemble}
                for s in self.steps
            ],
            "residual": {"name": self.residual[0], "of": list(self.residual[1])}
            if self.residual else None,
        }  # fmt: skip


# -- reading ---------------------------------------------------------------------------


def recipes_path() -> Path:
    """The shipped recipes: `weights/recipes.toml` (package data `stemsplit.weights`)."""
    from stemsplit.zoo.catalog import weights_dir

    return weights_dir() / RECIPES_FILE


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"recipe file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read recipe file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"recipe file {path} is not valid TOML: {err}") from None


def read_recipes(path: Path) -> list[Recipe]:
    """Every recipe of one TOML file, each checked (UsageError names recipe and step)."""
    data = _read_toml(Path(path))
    if "steps" in data:  # a file that is one recipe
        return [parse_recipe(Path(path).stem, data, Path(path))]
    recipes = []
    for name, table in data.items():
        if not isinstance(table, dict):
            raise UsageError(f"recipe file {path}: {name!r} is not a table of a recipe")
        recipes.append(parse_recipe(name, table, Path(path)))
    return recipes


def list_recipes() -> list[Recipe]:
    """The shipped recipes, in file order."""
    return read_recipes(recipes_path())


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def load_recipe(ref: str | Path | Recipe) -> Recipe:
    """A recipe by shipped name (or alias), by file (`FILE`, or `FILE:NAME` for a file
    holding several), or a ready `Recipe`."""
    if isinstance(ref, Recipe):
        return ref
    text = str(ref)
    path, wanted = text, ""
    if ":" in text and not Path(text).expanduser().exists():
        head, _, tail = text.rpartition(":")
        if Path(head).expanduser().exists():
            path, wanted = head, tail
    candidate = Path(path).expanduser()
    if candidate.exists() or candidate.suffix.lower() == ".toml" or "/" in path:
        recipes = read_recipes(candidate)
        if wanted:
            found = [r for r in recipes if _key(wanted) in {_key(n) for n in (r.name, *r.aliases)}]
            if not found:
                raise UsageError(f"recipe {wanted!r} is not in {candidate} (it has "
                                 f"{', '.join(r.name for r in recipes) or 'none'})")  # fmt: skip
            return found[0]
        if len(recipes) != 1:
            raise UsageError(
                f"{candidate} holds {len(recipes)} recipes "
                f"({', '.join(r.name for r in recipes) or 'none'}): choose one with "
                f"--recipe {candidate}:NAME"
            )
        return recipes[0]
    shipped = list_recipes()
    for recipe in shipped:
        if _key(text) in {_key(n) for n in (recipe.name, *recipe.aliases)}:
            return recipe
    import difflib

    close = difflib.get_close_matches(text, [r.name for r in shipped], n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"unknown recipe {text!r}: {hint}`stemsplit recipes` lists them, or give "
                     "a recipe file (.toml)")  # fmt: skip


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise UsageError(f"{where}: `{what}` must be a name or a list of names")
    return tuple(v.strip() for v in value)


def parse_recipe(name: str, table: Mapping[str, Any], origin: Path | str = "") -> Recipe:
    """Check one recipe's declaration: every problem is one UsageError naming the step."""
    where = f"recipe {name!r}"
    if not _NAME.match(name):
        raise UsageError(f"{where}: a recipe name uses letters, digits, '_', '-' and '+'")
    unknown = set(table) - _RECIPE_KEYS
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(a recipe has {', '.join(sorted(_RECIPE_KEYS))})")  # fmt: skip
    raw_steps = table.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise UsageError(f"{where}: no steps (add [[{name}.steps]] tables)")
    base = Path(origin).parent if origin else Path.cwd()
    steps: list[Step] = []
    outputs: dict[str, str] = {}
    for number, raw in enumerate(raw_steps, 1):
        step = _parse_step(raw, number, where, base, steps)
        for out in step.keep.values():
            if out in outputs:
                raise UsageError(f"{where}, step {step.name!r}: output {out!r} is already "
                                 f"written by step {outputs[out]!r}; output names must be "
                                 "unique")  # fmt: skip
            outputs[out] = step.name
        steps.append(step)
    residual = _parse_residual(table.get("residual"), where, steps, outputs)
    recipe = Recipe(
        name=name, steps=tuple(steps), residual=residual,
        description=str(table.get("description", "")), why=str(table.get("why", "")),
        aliases=tuple(str(a) for a in table.get("aliases", ())), origin=str(origin),
    )  # fmt: skip
    for step in steps:
        if not step.keep and not recipe.feeds(step.name):
            raise UsageError(f"{where}, step {step.name!r}: keeps no stem and feeds no later "
                             "step (add `keep`, or remove the step)")  # fmt: skip
    if not recipe.outputs:
        raise UsageError(f"{where}: writes nothing (no step keeps a stem)")
    return recipe


def _parse_step(raw: Any, number: int, where: str, base: Path, earlier: list[Step]) -> Step:
    if not isinstance(raw, dict):
        raise UsageError(f"{where}, step {number}: a step is a table ([[steps]])")
    name = raw.get("name", f"step{number}")
    if not isinstance(name, str) or not _NAME.match(name) or name == MIXTURE:
        raise UsageError(f"{where}, step {number}: `name` must be a name of letters, digits, "
                         f"'_', '-' (not {MIXTURE!r}), not {name!r}")  # fmt: skip
    here = f"{where}, step {name!r}"
    if any(s.name == name for s in earlier):
        raise UsageError(f"{here}: another step has this name; step names must be unique")
    unknown = set(raw) - _STEP_KEYS
    if unknown:
        raise UsageError(f"{here}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(a step has {', '.join(sorted(_STEP_KEYS))})")  # fmt: skip
    if "model" not in raw and "checkpoint" not in raw:
        raise UsageError(f"{here}: give `model` (zoo name, preset or list) or `checkpoint` "
                         "(a file or a list), or both for an ensemble")  # fmt: skip
    models = _strings(raw["model"], here, "model") if "model" in raw else ()
    checkpoints = _paths(raw.get("checkpoint"), base, here, "checkpoint")
    configs = _paths(raw.get("config"), base, here, "config")
    if configs and not checkpoints:
        raise UsageError(f"{here}: `config` belongs to a `checkpoint`; zoo models bring "
                         "their own")  # fmt: skip
    if len(configs) > len(checkpoints):
        raise UsageError(f"{here}: {len(configs)} configs for {len(checkpoints)} checkpoints")
    model_type = raw.get("model_type")
    if model_type is not None and (len(checkpoints) != 1 or not isinstance(model_type, str)):
        raise UsageError(f"{here}: `model_type` names the architecture of one `checkpoint`")
    ensemble = raw.get("ensemble")
    if ensemble is not None:
        from stemsplit.options import check_algorithm

        if not isinstance(ensemble, str):
            raise UsageError(f"{here}: `ensemble` is an algorithm name")
        try:
            check_algorithm(ensemble)
        except UsageError as err:
            raise UsageError(f"{here}: {err}") from None
    weights = raw.get("weights")
    if weights is not None and not isinstance(weights, (list, dict)):
        raise UsageError(f"{here}: `weights` is a list (one per model) or a table by model")
    source = raw.get("input", MIXTURE)
    if not isinstance(source, str):
        raise UsageError(f"{here}: `input` is {MIXTURE!r} or STEP.STEM, not {source!r}")
    step_input = None
    if source != MIXTURE:
        parent, dot, stem = source.partition(".")
        if not dot or not stem:
            raise UsageError(f"{here}: input {source!r}: use {MIXTURE!r} or STEP.STEM "
                             "(a stem of an earlier step, e.g. vocals.vocals)")  # fmt: skip
        if not any(s.name == parent for s in earlier):
            known = ", ".join(s.name for s in earlier) or "none"
            raise UsageError(f"{here}: input {source!r} names no earlier step (earlier steps: "
                             f"{known}); a step reads the mixture or an earlier step's stem")
        step_input = (parent, stem)
    return Step(name, models, checkpoints, configs, model_type, ensemble, weights, step_input,
                _parse_keep(raw.get("keep", {}), here))  # fmt: skip


def _paths(value: Any, base: Path, where: str, key: str) -> tuple[Path, ...]:
    """A step's `checkpoint`/`config`: a path or a list of paths, relative to the file."""
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise UsageError(f"{where}: `{key}` is a file path or a list of file paths")
    paths = (Path(v).expanduser() for v in values)
    return tuple(p if p.is_absolute() else (base / p).absolute() for p in paths)


def _parse_keep(value: Any, where: str) -> dict[str, str]:
    """`keep = ["vocals"]` or `keep = { vocals = "lead_vocals" }`: stem -> output name."""
    if isinstance(value, list):
        value = {str(v): str(v) for v in value}
    if not isinstance(value, dict):
        raise UsageError(f"{where}: `keep` is a list of stems or a table of stem = output name")
    keep = {}
    for stem, out in value.items():
        if not isinstance(out, str) or not _OUTPUT.match(out):
            raise UsageError(f"{where}: output name {out!r} for {stem!r} must be a file name "
                             "of letters, digits, '_', '-', '.'")  # fmt: skip
        keep[str(stem)] = out
    if len(set(keep.values())) != len(keep):
        raise UsageError(f"{where}: two kept stems have the same output name")
    return keep


def _parse_residual(value: Any, where: str, steps: list[Step], outputs: Mapping[str, str]
                    ) -> tuple[str, tuple[str, ...]] | None:  # fmt: skip
    """`residual = "other"` (mixture minus every output of the steps on the mixture) or
    `residual = { name = "other", of = ["drums", "bass", "vocals"] }`."""
    if value is None:
        return None
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or set(value) - {"name", "of"} or "name" not in value:
        raise UsageError(f"{where}: `residual` is a name or {{ name = ..., of = [...] }}")
    name = value["name"]
    if not isinstance(name, str) or not _OUTPUT.match(name):
        raise UsageError(f"{where}: residual name {name!r} must be a file name")
    if name in outputs:
        raise UsageError(f"{where}: residual {name!r} is already written by step "
                         f"{outputs[name]!r}; output names must be unique")  # fmt: skip
    if "of" in value:
        of = _strings(value["of"], f"{where}, residual {name!r}", "of")
    else:
        of = tuple(out for s in steps if s.input is None for out in s.keep.values())
    unknown = [o for o in of if o not in outputs]
    if unknown:
        raise UsageError(f"{where}, residual {name!r}: {', '.join(unknown)} is not an output of "
                         f"any step (outputs: {', '.join(outputs)})")  # fmt: skip
    if not of:
        raise UsageError(f"{where}, residual {name!r}: subtracts nothing")
    return name, tuple(dict.fromkeys(of))


# -- planning --------------------------------------------------------------------------


def plan_recipe(
    recipe: Recipe,
    engine: EngineSettings,
    output: OutputOptions,
    load_checkpoint: Callable[[ModelSpec, list[str] | None], Any] | None = None,
) -> RunPlan:
    """The run's `RunPlan` for `recipe`: every step planned (models known, the stems it
    keeps and feeds exist) before any work; its `recipe` field holds the `RecipePlan`."""
    from stemsplit.engine.ensemble import single_layout
    from stemsplit.engine.pipeline import StemPlan
    from stemsplit.plan import RunPlan, make_plan

    planned: list[PlannedStep] = []
    models: list[Any] = []
    for step in recipe.steps:
        feeds = recipe.feeds(step.name)
        wanted = tuple(dict.fromkeys([*step.keep, *feeds]))
        for checkpoint in step.checkpoints:
            if not checkpoint.is_file():
                raise UsageError(f"recipe {recipe.name!r}, step {step.name!r}: checkpoint "
                                 f"{checkpoint} not found")  # fmt: skip
        try:
            specs = _step_specs(step)
            options = ModelOptions(models=specs, ensemble=step.ensemble, weights=step.weights)
            plan = make_plan(options, StemOptions(stems=wanted), engine, output,
                             load_checkpoint)  # fmt: skip
        except UnknownStem as err:
            raise _unknown_stem(err, recipe, step, options, engine, output,
                                load_checkpoint) from None
        except StemsplitError as err:
            raise _in_step(err, recipe.name, step.name) from None
        planned.append(PlannedStep(step.name, step.input, plan, len(models), dict(step.keep),
                                   feeds))  # fmt: skip
        models.extend(plan.models)
    outputs = recipe.outputs
    recipe_plan = RecipePlan(recipe.name, tuple(planned), recipe.residual, outputs)
    stems = StemPlan(outputs, {}, outputs)
    run = RunPlan(tuple(models), "recipe", recipe.name, single_layout(outputs), stems, engine,
                  output)  # fmt: skip
    return replace(run, recipe=recipe_plan)


def _step_specs(step: Step) -> tuple[ModelSpec, ...]:
    """A step's models: zoo names, then checkpoints with the configs paired to them."""
    from stemsplit.zoo.local import pair_configs

    configs = pair_configs(step.checkpoints, step.configs)
    return (*(ModelSpec(name=n) for n in step.models),
            *(ModelSpec(checkpoint=c, config=config, model_type=step.model_type)
              for c, config in zip(step.checkpoints, configs)))  # fmt: skip


def _unknown_stem(err: UnknownStem, recipe: Recipe, step: Step, options: ModelOptions,
                  engine: EngineSettings, output: OutputOptions, loader: Any) -> StemsplitError:
    """A stem `step` lacks: the fault of `step` when it is one it keeps, else of the later
    step that reads it (found by planning the kept stems alone)."""
    from stemsplit.plan import make_plan

    if step.keep:
        try:
            make_plan(options, StemOptions(stems=tuple(step.keep)), engine, output, loader)
        except StemsplitError:
            return _in_step(err, recipe.name, step.name)
    readers = [(s, s.input) for s in recipe.steps if s.input is not None
               and s.input[0] == step.name]  # fmt: skip
    for reader, (_, stem) in readers:
        try:
            make_plan(options, StemOptions(stems=(stem,)), engine, output, loader)
        except StemsplitError as missing:
            return _in_step(UnknownStem(f"input {reader.source!r}: step {step.name!r} has no "
                                        f"such stem ({missing})"), recipe.name, reader.name)
    return _in_step(err, recipe.name, step.name)


def _in_step(err: StemsplitError, recipe: str, step: str) -> StemsplitError:
    """The same error (same exit code), its message naming the recipe and step."""
    message = f"recipe {recipe!r}, step {step!r}: {err}"
    try:
        return type(err)(message)
    except TypeError:
        out = StemsplitError(message)
        out.exit_code = err.exit_code
        return out
