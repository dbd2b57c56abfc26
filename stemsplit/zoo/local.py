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
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stemsplit.errors import StemsplitError, UsageError

if TYPE_CHECKING:
    from stemsplit.options import ModelSpec
    from stemsplit.zoo.catalog import ModelCard

# File stems that say nothing about the model (trainers' default names).
GENERIC_STEMS = frozenset({
    "model", "models", "checkpoint", "ckpt", "last", "best", "final", "latest", "weights",
    "state_dict", "pytorch_model", "model_best", "best_model", "last_model", "final_model",
    "epoch", "net", "network",
})  # fmt: skip
HASH_CHARS = 8

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


def config_need(checkpoint: Path) -> str | None:
    """What `checkpoint` lacks without a `--config` (None: it carries its own)."""
    from stemsplit.models import registry
    from stemsplit.zoo import checkpoints, uvr_data

    path = Path(checkpoint).expanduser()
    suffix = path.suffix.lower()
    if not path.is_file() or suffix in {".yaml", ".yml", ".safetensors"}:
        return None  # a bag or a Demucs safetensors; a missing file fails on its own
    if suffix == ".onnx":
        known = uvr_data.uvr_hash(path) in uvr_data.model_data("mdx")
        return None if known else "a JSON config of its UVR MDX-Net settings (unknown hash)"
    loaded = checkpoints.read_torch_file(path)
    if checkpoints.is_demucs_package(loaded):
        return None
    state = checkpoints.unwrap_state_dict(loaded, str(path))
    if uvr_data.is_vr_state(state):
        known = uvr_data.uvr_hash(path) in uvr_data.model_data("vr")
        return None if known else "a JSON config of its UVR VR settings (unknown hash)"
    if registry.recognise_state(state) is not None or known_config(path) is not None:
        return None
    return "an MSST yaml naming its architecture"


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
