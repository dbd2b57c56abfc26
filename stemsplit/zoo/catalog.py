"""Model cards: the zoo's declarative entries, read from TOML.

Built-in cards live in `weights/*.toml` (shipped as the package data
`stemsplit.weights`); `STEMSPLIT_ZOO=FILE.toml` adds cards or overrides built-in ones
by name. One top-level table per model; see `weights/demucs.toml` for the layout.
A table with `models` instead of `architecture` is a preset: a named ensemble of
cards with its weights and algorithm (`weights/presets.toml`); `expand_models` turns
preset names into their models. Names are matched case-insensitively with `-` and
`_` treated alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsplit.errors import ModelError, UnknownModel, UsageError
from stemsplit.models import registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ZOO_ENV = "STEMSPLIT_ZOO"

# What the weights' licence (a card's `licence`) lets anyone do: (open, commercial).
# `open`: stated terms that let anyone use and share the weights (open-source and
# Creative Commons licences, non-commercial ones included); `commercial`: those terms
# allow commercial use. `research-only` (stated, but for research alone) and `unknown`
# (nobody stated one) allow neither; so does any text not in this table.
LICENCE_USES: dict[str, tuple[bool, bool]] = {
    "MIT": (True, True),
    "Apache-2.0": (True, True),
    "BSD-3-Clause": (True, True),
    "CC0-1.0": (True, True),
    "CC-BY-4.0": (True, True),
    "CC-BY-SA-4.0": (True, True),
    "CC-BY-NC-4.0": (True, False),
    "CC-BY-NC-SA-4.0": (True, False),
    "research-only": (False, False),
    "unknown": (False, False),
}


@dataclass(frozen=True)
class FileSpec:
    """One file of a model: where to get it and how to check it."""

    name: str
    url: str
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class ModelCard:
    """A zoo entry. `sources` are the network's outputs in model order.

    `bag_weights` is per file (bag member), per source (Demucs bags); `bag_segment`
    the bag's segment override in seconds; `recipe` holds inference overrides
    (`segment_seconds`, `segment_samples`, `overlap`, `batch_size`); `config` is an
    inline dict, a file under `weights/configs/`, or the name of one of `files`.
    """

    name: str
    architecture: str
    sources: tuple[str, ...]
    samplerate: int
    files: tuple[FileSpec, ...]
    aliases: tuple[str, ...] = ()
    description: str = ""
    residual: str | None = None
    config: str | dict[str, Any] | None = None
    bag_weights: tuple[tuple[float, ...], ...] | None = None
    bag_segment: float | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    licence: str = "unknown"
    licence_source: str = ""
    code_licence: str = ""
    origin: str = ""

    def licence_allows(self, requirement: str) -> bool:
        """Whether the weights' licence meets `requirement` (options.LICENCE_REQUIREMENTS)."""
        if requirement == "any":
            return True
        is_open, commercial = LICENCE_USES.get(self.licence, (False, False))
        return commercial if requirement == "commercial" else is_open

    @property
    def size(self) -> int | None:
        """Total bytes of the files, when all sizes are known."""
        total = 0
        for spec in self.files:
            if spec.size is None:
                return None
            total += spec.size
        return total

    def member_weights(self) -> list[list[float]]:
        """Per-file, per-source weights (all ones for a bag without weights)."""
        if self.bag_weights is not None:
            return [list(row) for row in self.bag_weights]
        return [[1.0] * len(self.sources) for _ in self.checkpoint_files()]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (for `--json` and the Python API)."""
        data = dataclasses.asdict(self)
        data["files"] = [dataclasses.asdict(spec) for spec in self.files]
        data["size"] = self.size
        return data

    def checkpoint_files(self) -> list[FileSpec]:
        """The files that are weights (bag members), not a downloaded config."""
        return [spec for spec in self.files if spec.name != self.config]


def weights_dir() -> Path:
    """The folder of built-in cards: package data, else the checkout's `weights/`."""
    try:
        from importlib.resources import files

        folder = Path(str(files("stemsplit.weights")))
        if folder.is_dir():
            return folder
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "weights"


def configs_dir() -> Path:
    """Where card configs given as a relative path live."""
    return weights_dir() / "configs"


def normalize(name: str) -> str:
    """Lookup key: case-insensitive, `-` and `_` alike."""
    return name.strip().lower().replace("-", "_")


def _require(table: dict[str, Any], key: str, name: str, origin: str) -> Any:
    if key not in table:
        raise ModelError(f"model card {name!r} in {origin} lacks {key!r}: add it to the card")
    return table[key]


def _parse_file(entry: Any, name: str, origin: str) -> FileSpec:
    if not isinstance(entry, dict) or "url" not in entry:
        raise ModelError(f"model card {name!r} in {origin}: each file needs a 'url'")
    url = str(entry["url"])
    sha = entry.get("sha256")
    prefix = entry.get("sha256_prefix")
    return FileSpec(
        name=str(entry.get("name") or url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]),
        url=url,
        mirrors=tuple(str(m) for m in entry.get("mirrors", ())),
        sha256=str(sha).lower() if sha else None,
        sha256_prefix=str(prefix).lower() if prefix else None,
        size=int(entry["size"]) if entry.get("size") is not None else None,
    )


def parse_card(name: str, table: dict[str, Any], origin: str) -> ModelCard:
    """Build and check one card from its TOML table."""
    if not isinstance(table, dict):
        raise ModelError(f"{origin}: {name!r} is not a table; one [table] per model")
    architecture = str(_require(table, "architecture", name, origin))
    if architecture not in registry.ARCHITECTURES:
        raise ModelError(
            f"model card {name!r} in {origin}: unknown architecture {architecture!r} "
            f"(one of {', '.join(registry.names())})"
        )
    files = tuple(_parse_file(e, name, origin) for e in _require(table, "files", name, origin))
    sources = tuple(str(s) for s in _require(table, "sources", name, origin))
    bag = table.get("bag", {})
    weights = bag.get("weights")
    card = ModelCard(
        name=name,
        architecture=architecture,
        sources=sources,
        samplerate=int(_require(table, "samplerate", name, origin)),
        files=files,
        aliases=tuple(str(a) for a in table.get("aliases", ())),
        description=str(table.get("description", "")),
        residual=table.get("residual"),
        config=table.get("config"),
        bag_weights=tuple(tuple(float(w) for w in row) for row in weights) if weights else None,
        bag_segment=float(bag["segment"]) if bag.get("segment") is not None else None,
        recipe=dict(table.get("recipe", {})),
        quality=dict(table.get("quality", {})),
        licence=str(table.get("licence", table.get("license", "unknown"))),
        licence_source=str(table.get("licence_source", "")),
        code_licence=str(table.get("code_licence", "")),
        origin=origin,
    )
    if not files:
        raise ModelError(f"model card {name!r} in {origin} lists no files")
    if card.bag_weights is not None:
        members = card.checkpoint_files()
        if len(card.bag_weights) != len(members) or any(
            len(row) != len(sources) for row in card.bag_weights
        ):
            raise ModelError(
                f"model card {name!r} in {origin}: bag weights must be "
                f"{len(members)} rows of {len(sources)} (one per member and source)"
            )
    return card


def _is_preset(table: Any) -> bool:
    return isinstance(table, dict) and "models" in table and "architecture" not in table


def _read_tables(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"cannot read model cards {path}: {err}") from err


def read_cards(path: Path) -> list[ModelCard]:
    """All model cards of one TOML file (presets are read by `read_presets`)."""
    data = _read_tables(path)
    return [parse_card(n, t, str(path)) for n, t in data.items() if not _is_preset(t)]


def _zoo_paths() -> list[Path]:
    """Built-in card files in listing order, then STEMSPLIT_ZOO's."""
    order = {"demucs": 0, "roformer": 1, "conv_tasnet": 2, "presets": 8}
    paths = sorted((p for p in weights_dir().glob("*.toml") if p.name != "recipes.toml"),
                   key=lambda p: (order.get(p.stem, 9), p.name))  # recipes: stemsplit.recipes
    extra = os.environ.get(ZOO_ENV)
    if extra:
        path = Path(extra).expanduser()
        if not path.is_file():
            raise ModelError(f"{ZOO_ENV}={extra} is not a file: point it at a TOML of model cards")
        paths.append(path)
    return paths


def _load_all() -> dict[str, ModelCard]:
    cards: dict[str, ModelCard] = {}
    for path in _zoo_paths():
        for card in read_cards(path):
            cards[normalize(card.name)] = card
    return cards


def list_cards() -> list[ModelCard]:
    """Every card, built-in and from STEMSPLIT_ZOO, in file order."""
    return list(_load_all().values())


def get_card(name: str) -> ModelCard:
    """The card named (or aliased) `name`; UnknownModel with suggestions otherwise."""
    cards = _load_all()
    key = normalize(name)
    if key in cards:
        return cards[key]
    for card in cards.values():
        if key in {normalize(alias) for alias in card.aliases}:
            return card
    preset = get_preset(name)
    if preset is not None:
        raise UnknownModel(
            f"{name!r} is a preset (an ensemble of {', '.join(preset.models)}), not one model: "
            "give it to `-m` / `separate(model=...)`, which expand it"
        )
    known = [card.name for card in cards.values()]
    known += [alias for card in cards.values() for alias in card.aliases]
    known += [preset.name for preset in list_presets()]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModel(f"unknown model {name!r}: {hint}`stemsplit models` lists them")


def require_licence(names: Sequence[str], requirement: str) -> None:
    """Refuse (ModelError) the first zoo model whose weights' licence does not meet
    `requirement` ("any", "open" or "commercial"): one line with the model, its licence
    and where that licence was stated. Checked on the plan, before any download."""
    for name in names:
        card = get_card(name)
        if not card.licence_allows(requirement):
            source = card.licence_source or "no source given"
            raise ModelError(
                f"model {card.name!r}: its weights' licence is {card.licence} ({source}); "
                f"--require-licence {requirement} refuses it"
            )


def load_card_config(card: ModelCard, downloaded: dict[str, Path] | None = None) -> Any:
    """The card's parsed config: inline, a downloaded file, a path (relative to the
    card's TOML file, else to weights/configs/)."""
    from stemsplit.zoo.safe_yaml import load_yaml

    if card.config is None or isinstance(card.config, dict):
        return card.config
    if downloaded and card.config in downloaded:
        return load_yaml(downloaded[card.config])
    path = Path(card.config).expanduser()
    if not path.is_absolute():  # beside the card's TOML first (STEMSPLIT_ZOO), then built-in
        beside = Path(card.origin).parent / path
        path = beside if card.origin and beside.is_file() else configs_dir() / path
    if not path.is_file():
        raise ModelError(f"config {card.config!r} of model {card.name!r} not found at {path}")
    return load_yaml(path)


@dataclass(frozen=True)
class Preset:
    """A named ensemble of zoo models: what `-m NAME` expands to.

    `weights[i]` maps a stem (or "*") to `models[i]`'s weight; `stems` are written
    when the user asks for none; `why` says in one line why it is built so.
    """

    name: str
    models: tuple[str, ...]
    weights: tuple[dict[str, float], ...]
    ensemble: str = "avg"
    stems: tuple[str, ...] = ()
    description: str = ""
    why: str = ""
    aliases: tuple[str, ...] = ()
    origin: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, marked as a preset."""
        data = dataclasses.asdict(self)
        data["kind"] = "preset"
        data["weights"] = {m: dict(w) for m, w in zip(self.models, self.weights)}
        return data


def _weight_table(value: Any, where: str) -> dict[str, float]:
    """A weight as given: a number (every stem) or a table of stem -> number."""
    table = value if isinstance(value, Mapping) else {"*": value}
    try:
        weights = {str(stem): float(number) for stem, number in table.items()}
    except (TypeError, ValueError) as err:
        raise ModelError(f"{where}: weights are numbers or tables of stem = number") from err
    if any(not w >= 0 for w in weights.values()):
        raise ModelError(f"{where}: weights must be >= 0")
    return weights


def parse_preset(name: str, table: dict[str, Any], origin: str) -> Preset:
    """Build and check one preset from its TOML table."""
    where = f"preset {name!r} in {origin}"
    models = table.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise ModelError(f"{where}: `models` must be a list of model names")
    given = table.get("weights", {})
    if not isinstance(given, Mapping) or set(given) - set(models):
        raise ModelError(f"{where}: `weights` is a table keyed by names from `models`")
    return Preset(
        name=name,
        models=tuple(models),
        weights=tuple(_weight_table(given.get(m, 1.0), where) for m in models),
        ensemble=str(table.get("ensemble", "avg")),
        stems=tuple(str(s) for s in table.get("stems", ())),
        description=str(table.get("description", "")),
        why=str(table.get("why", "")),
        aliases=tuple(str(a) for a in table.get("aliases", ())),
        origin=origin,
    )


def read_presets(path: Path) -> list[Preset]:
    """All presets of one TOML file."""
    data = _read_tables(path)
    return [parse_preset(n, t, str(path)) for n, t in data.items() if _is_preset(t)]


def list_presets() -> list[Preset]:
    """Every preset, built-in and from STEMSPLIT_ZOO (which may override by name)."""
    presets: dict[str, Preset] = {}
    for path in _zoo_paths():
        for preset in read_presets(path):
            presets[normalize(preset.name)] = preset
    return list(presets.values())


def get_preset(name: str) -> Preset | None:
    """The preset named (or aliased) `name`, or None."""
    key = normalize(name)
    for preset in list_presets():
        if key in {normalize(n) for n in (preset.name, *preset.aliases)}:
            return preset
    return None


@dataclass(frozen=True)
class Expansion:
    """A model request with presets replaced by their models.

    `names` holds model names (or ready bundles, passed through); `weights[i]` is
    model i's stem -> weight table; `ensemble` the algorithm; `stems` the stems a
    lone preset writes by default; `label` names the output folder.
    """

    names: list[Any]
    weights: list[dict[str, float]]
    ensemble: str
    stems: tuple[str, ...]
    label: str


def expand_models(
    names: Sequence[Any],
    weights: Sequence[Any] | Mapping[str, Any] | None = None,
    ensemble: str | None = None,
) -> Expansion:
    """Expand presets in `names` into their models, weights and algorithm.

    `weights` is one entry per name (a number or a stem -> number table), or a table
    keyed by model name. A weight given for a preset scales its members' weights; one
    given for a member by name replaces that member's preset weights for those stems.
    An explicit `ensemble` wins over the presets' algorithm.
    """
    names = list(names)
    label = "+".join(n if isinstance(n, str) else str(getattr(n, "name", n)) for n in names)
    presets = [get_preset(n) if isinstance(n, str) else None for n in names]
    keyed: dict[str, dict[str, float]] = {}
    if weights is None:
        aligned: list[dict[str, float]] = [{} for _ in names]
    elif isinstance(weights, Mapping):
        aligned = [{} for _ in names]
        keyed = {normalize(k): _weight_table(v, f"weights for {k}") for k, v in weights.items()}
    else:
        if len(weights) != len(names):
            raise UsageError(f"{len(weights)} weights for {len(names)} models: give one per model")
        aligned = [_weight_table(w, "weights") for w in weights]
    known = {normalize(n) for n in names if isinstance(n, str)}
    known |= {normalize(m) for p in presets if p is not None for m in p.models}
    unknown = [k for k in keyed if k not in known]
    if unknown:
        raise UsageError(f"weights for {', '.join(unknown)}: not one of the models given")

    out_names: list[Any] = []
    out_weights: list[dict[str, float]] = []
    for name, preset, given in zip(names, presets, aligned):
        if preset is None:
            key = normalize(name) if isinstance(name, str) else None
            out_names.append(name)
            out_weights.append({**given, **keyed.get(key or "", {})})
            continue
        scale = {**given, **keyed.get(normalize(name), {})}
        for model, own in zip(preset.models, preset.weights):
            out_names.append(model)
            out_weights.append({**_scaled(own, scale), **keyed.get(normalize(model), {})})
    algorithms = {p.ensemble for p in presets if p is not None}
    if ensemble is None and len(algorithms) > 1:
        raise UsageError(
            f"the presets use different algorithms ({', '.join(sorted(algorithms))}): "
            "choose one with --ensemble"
        )
    chosen = ensemble or (algorithms.pop() if algorithms else "avg")
    lone = presets[0] if len(names) == 1 else None
    return Expansion(out_names, out_weights, chosen, lone.stems if lone else (), label)


def _scaled(own: Mapping[str, float], scale: Mapping[str, float]) -> dict[str, float]:
    """Member weights times a preset-wide scale, stem by stem."""
    if not scale:
        return dict(own)
    keys = set(own) | set(scale) | {"*"}

    def at(table: Mapping[str, float], stem: str) -> float:
        return table.get(stem, table.get("*", 1.0))

    return {k: at(own, k) * at(scale, k) for k in keys}
