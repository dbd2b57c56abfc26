"""Local checkpoint files: the name a run gives each, and which `--config` goes with which.

A label names a model in output folders, records, reports and recipe chains, so two
different files must never share one (`a/model.ckpt` and `b/model.ckpt` would write the
same `separated/model/` and the second would replace the first model's stems). A file
the zoo knows (its sha256 matches a one-file card) is called by the card's name; any
other file by its stem, or its folder's name when the stem says nothing (`model`,
`last`, `best`...), plus the first 8 hex of its content hash (and of its config's).

Configs pair with the checkpoints that need one, in order: a Demucs package, a bag
yaml, a UVR file known by its hash, a Conv-TasNet state dict (its shapes, or the
`args.json` beside it, give the arguments) and a file whose zoo card ships a config
carry their own.

A bare checkpoint's architecture is not known until its file is read: `recognise`
tells its file format (the registry's `FileFormat`, which picks the loader's reader),
by its suffix where that says it (`suffix_format`, the one place a suffix decides),
else by the contents of the torch file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.errors import StemsplitError, UsageError

if TYPE_CHECKING:
    from stemsplit.models.registry import FileFormat
    from stemsplit.options import ModelSpec
    from stemsplit.zoo.catalog import ModelCard

# File stems that say nothing about the model (trainers' default names).
GENERIC_STEMS = frozenset({
    "model", "models", "checkpoint", "ckpt", "last", "best", "final", "latest", "weights",
    "state_dict", "pytorch_model", "model_best", "best_model", "last_model", "final_model",
    "epoch", "net", "network",
})  # fmt: skip
HASH_CHARS = 8
BAG_SUFFIXES = frozenset({".yaml", ".yml"})  # a Demucs bag: member signatures, weights

_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, computed once per run for each (path, size, mtime)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        from stemsplit.zoo.fetch import sha256_of

        _digests[key] = sha256_of(path)
    return _digests[key]


def zoo_name(digest: str) -> str | None:
    """The card whose only checkpoint file has this sha256 (full, published prefix, or
    recorded at its first download), or None."""
    from stemsplit.zoo import catalog, fetch

    try:
        recorded = fetch.recorded_hashes()
    except StemsplitError:
        recorded = {}
    for card in catalog.list_cards():
        files = card.checkpoint_files()
        if len(files) != 1:  # one member of a bag is not the bag
            continue
        expected, _ = fetch.expected_hash(files[0], recorded)
        if expected and digest.startswith(expected.lower()):
            return card.name
    return None


def spec_label(spec: ModelSpec) -> str:
    """A model's name in output folders and records: a ready bundle's, a zoo name, or
    a checkpoint's (distinct per file: `checkpoint_label`)."""
    if spec.bundle is not None:
        return str(spec.bundle.name)
    if spec.name is not None:
        return spec.name
    return checkpoint_label(Path(str(spec.checkpoint)), spec.config)


def checkpoint_label(checkpoint: Path, config: Path | None = None) -> str:
    """The name of a local checkpoint (with its config) in folders, records and reports."""
    checkpoint = Path(checkpoint).expanduser()
    base = checkpoint.stem
    if not checkpoint.is_file():  # the loader says what is wrong with it
        return base
    digest = file_sha256(checkpoint)
    if config is None:
        known = zoo_name(digest)
        if known is not None:
            return known
    elif Path(config).is_file():
        digest = hashlib.sha256((digest + file_sha256(Path(config))).encode()).hexdigest()
    if base.lower() in GENERIC_STEMS and checkpoint.absolute().parent.name:
        base = checkpoint.absolute().parent.name
    short = digest[:HASH_CHARS]
    if config is None and base.lower().endswith(short):  # demucs names files <sig>-<sha8>
        return base
    return f"{base}-{short}"


def known_config(checkpoint: Path) -> ModelCard | None:
    """The zoo card whose file has `checkpoint`'s name and whose config ships with
    stemsplit (UVR/MSST file names are unique): its config needs no --config."""
    from stemsplit.zoo import catalog

    for card in catalog.list_cards():
        if card.config is not None and any(f.name == checkpoint.name for f in card.files):
            return card
    return None


@dataclass(frozen=True)
class LocalCheckpoint:
    """A bare `--checkpoint FILE [--config FILE]` with its file format recognised, and
    what was read to recognise it: `contents` is a Demucs bag or package, or the
    unwrapped state dict (None for an ONNX file, which its reader opens);
    `package_weights` marks a Demucs package given with an MSST yaml, whose network
    comes from the yaml and only its weights from the package."""

    path: Path
    config: Path | None
    model_type: str | None
    file_format: FileFormat
    contents: Any = None
    package_weights: bool = False


def suffix_format(path: Path, config: Path | None = None) -> FileFormat | None:
    """The file format a bare checkpoint's suffix says, or None for a torch file, which
    only its contents tell: a bag yaml (without `--config`) or a safetensors file is
    Demucs, `.onnx` UVR MDX-Net. The one place a suffix decides how a file is read."""
    suffix = path.suffix.lower()
    if (suffix in BAG_SUFFIXES and config is None) or suffix == ".safetensors":
        return "demucs"
    return "onnx" if suffix == ".onnx" else None


def recognise(path: Path, config: Path | None = None,
              model_type: str | None = None) -> LocalCheckpoint:  # fmt: skip
    """`path`'s file format, by its suffix (`suffix_format`) or else by the torch file's
    contents: a Demucs package (without `--config`), or a state dict whose key names
    the registry recognises (UVR VR, Conv-TasNet, SCNet variants); any other state dict
    is MSST's, its yaml naming the architecture."""
    from stemsplit.models import registry
    from stemsplit.zoo import checkpoints

    found = suffix_format(path, config)
    if found == "demucs":  # a bag yaml, or a package in a safetensors file
        contents: Any = (checkpoints.read_demucs_bag(path) if path.suffix.lower() in BAG_SUFFIXES
                         else checkpoints.read_demucs_safetensors(path))  # fmt: skip
        return LocalCheckpoint(path, config, model_type, found, contents)
    if found is not None:
        return LocalCheckpoint(path, config, model_type, found)
    loaded = checkpoints.read_torch_file(path)
    package = checkpoints.is_demucs_package(loaded)
    if package and config is None:
        return LocalCheckpoint(path, config, model_type, "demucs",
                               checkpoints.demucs_package(loaded, str(path)))  # fmt: skip
    state = checkpoints.unwrap_state_dict(loaded, str(path))
    by_state = registry.recognise_state(state)
    file_format = by_state.file_format if by_state is not None else "msst"
    return LocalCheckpoint(path, config, model_type, file_format, state, package)


def config_need(checkpoint: Path) -> str | None:
    """What `checkpoint` lacks without a `--config` (None: it carries its own)."""
    from stemsplit.models import registry
    from stemsplit.zoo import uvr_data

    path = Path(checkpoint).expanduser()
    if not path.is_file() or suffix_format(path) == "demucs":
        return None  # a bag or a Demucs safetensors; a missing file fails on its own
    local = recognise(path)
    if local.file_format in ("onnx", "uvr-vr"):
        kind, what = ("mdx", "MDX-Net") if local.file_format == "onnx" else ("vr", "VR")
        known = uvr_data.uvr_hash(path) in uvr_data.model_data(kind)
        return None if known else f"a JSON config of its UVR {what} settings (unknown hash)"
    if local.file_format == "demucs" or registry.recognise_state(local.contents) is not None:
        return None
    return None if known_config(path) is not None else "an MSST yaml naming its architecture"


def pair_configs(checkpoints: Sequence[Path], configs: Sequence[Path]) -> list[Path | None]:
    """Each checkpoint's config: one per checkpoint in order, or one per checkpoint that
    needs one (in order) when fewer are given; an ambiguous pairing is one UsageError
    naming each checkpoint and what it lacks."""
    if not configs:
        return [None] * len(checkpoints)
    if len(configs) == len(checkpoints):
        return [Path(c) for c in configs]
    missing = [str(path) for path in checkpoints if not Path(path).expanduser().is_file()]
    if missing:
        raise UsageError(f"{len(configs)} --config for {len(checkpoints)} --checkpoint: "
                         f"cannot pair them, {', '.join(missing)} is not a file")  # fmt: skip
    needs = {index: config_need(Path(path)) for index, path in enumerate(checkpoints)}
    needing = [index for index, need in needs.items() if need is not None]
    if len(needing) == len(configs) and len(configs) < len(checkpoints):
        given = iter(configs)
        return [Path(next(given)) if index in needing else None
                for index in range(len(checkpoints))]  # fmt: skip
    each = "; ".join(f"{path} " + (f"needs {needs[i]}" if needs[i] else
                     "carries its own") for i, path in enumerate(checkpoints))  # fmt: skip
    raise UsageError(
        f"{len(configs)} --config for {len(checkpoints)} --checkpoint, of which "
        f"{len(needing)} need one ({each}): give one --config per checkpoint that needs "
        "one, in the same order"
    )
