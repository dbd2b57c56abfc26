"""Model cards: the zoo's declarative entries, read from TOML.

Built-in cards live in `weights/*.toml` (shipped as the package data
`stemsplit.weights`); `STEMSPLIT_ZOO=FILE.toml` adds cards or overrides built-in ones
by name. One top-level table per model; see `weights/demucs.toml` for the layout.
Names are matched case-insensitively with `-` and `_` treated alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsplit.errors import ModelError, UnknownModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ARCHITECTURES = ("demucs", "bs_roformer", "mel_band_roformer", "conv_tasnet")
ZOO_ENV = "STEMSPLIT_ZOO"


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
    licence: str = ""
    origin: str = ""

    @property
    def size(self) -> int | None:
        """Total bytes of the files, when all sizes are known."""
        sizes = [spec.size for spec in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

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
    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"model card {name!r} in {origin}: unknown architecture {architecture!r} "
            f"(one of {', '.join(ARCHITECTURES)})"
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
        licence=str(table.get("licence", table.get("license", ""))),
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


def read_cards(path: Path) -> list[ModelCard]:
    """All cards of one TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"cannot read model cards {path}: {err}") from err
    return [parse_card(name, table, str(path)) for name, table in data.items()]


def _load_all() -> dict[str, ModelCard]:
    cards: dict[str, ModelCard] = {}
    order = {"demucs": 0, "roformer": 1, "conv_tasnet": 2}
    paths = sorted(weights_dir().glob("*.toml"), key=lambda p: (order.get(p.stem, 9), p.name))
    for path in paths:
        for card in read_cards(path):
            cards[normalize(card.name)] = card
    extra = os.environ.get(ZOO_ENV)
    if extra:
        path = Path(extra).expanduser()
        if not path.is_file():
            raise ModelError(f"{ZOO_ENV}={extra} is not a file: point it at a TOML of model cards")
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
    known = [card.name for card in cards.values()]
    known += [alias for card in cards.values() for alias in card.aliases]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownModel(f"unknown model {name!r}: {hint}`stemsplit models` lists them")


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
