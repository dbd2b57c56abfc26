"""Turn a zoo name or a checkpoint file into ready models: the `ModelBundle`.

A card name resolves through the catalog and the verified cache; `--checkpoint FILE
[--config FILE]` is recognised from its contents (`zoo.local.recognise`): a Demucs
package (a dict with `klass`, or safetensors with that metadata, or a bag yaml beside
its members), an MSST state_dict with a yaml whose model section has
`freqs_per_bands` (BS-RoFormer) or `num_bands` (Mel-Band RoFormer), a state dict whose
key names the registry knows (Conv-TasNet, UVR VR), or a UVR MDX-Net `.onnx`. Either
way the file is read by the reader of its file format (`_READERS`: the registry says
which format each architecture's file is). Networks are built only through the
architecture factories, imported lazily.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from stemsplit.errors import ModelError, UnknownStem
from stemsplit.models import registry
from stemsplit.models.base import as_separation_model
from stemsplit.zoo import catalog, checkpoints, fetch, uvr_data
from stemsplit.zoo.catalog import ModelCard
from stemsplit.zoo.local import LocalCheckpoint, checkpoint_label, known_config, recognise

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from stemsplit.models.registry import FileFormat

# A model's networks and each one's weight per source (one row per network).
Members: TypeAlias = "tuple[list[nn.Module], list[list[float]]]"


@dataclass
class ModelBundle:
    """Models ready to run and how to combine them.

    `weights[i][j]` is member i's weight for `sources[j]` (Demucs bag semantics: per
    source, a weighted average over members); `residual` names mixture minus the sum
    of the outputs, for models that output fewer stems than the mixture holds.
    """

    name: str
    sources: list[str]
    members: list[nn.Module]
    weights: list[list[float]]
    residual: str | None
    samplerate: int
    card: ModelCard | None = None


def implemented(architecture: str) -> bool:
    """True when the factory for `architecture` can be imported (imports torch)."""
    try:
        registry.get(architecture).build_function()
    except ModelError:
        return False
    return True


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Strict load (fp16 states are cast to the parameters' dtype), eval mode."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelError(f"{source}: the weights do not fit the model ({_short(err)})") from err
    return model.eval()


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) < 300 else text[:300] + "..."


def build_demucs_member(package: checkpoints.DemucsPackage, source: str) -> nn.Module:
    """One Demucs network from its package."""
    from stemsplit.models.no_init import skipped_random_init

    build = registry.get("demucs").build_function()
    try:
        with skipped_random_init():  # the strict load below sets every weight
            model = build(package.klass, package.args, package.kwargs)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{source}: cannot build {package.klass} ({_short(err)})") from err
    return _load_state(model, package.state, source)


class _Segmented(Protocol):
    """Demucs models: a `segment` in seconds (their recipe derives from it)."""

    segment: float


def _update_recipe(model: nn.Module, **changes: Any) -> None:
    """Replace fields of `model.recipe`.

    Some models derive their recipe from attributes (Demucs' from `segment`); their
    segment is changed through that attribute, other fields cannot be overridden.
    """
    separation = as_separation_model(model)
    recipe = dataclasses.replace(separation.recipe, **changes)
    if not isinstance(getattr(type(model), "recipe", None), property):
        separation.recipe = recipe
        return
    if "segment_samples" in changes and hasattr(model, "segment"):
        cast(_Segmented, model).segment = changes["segment_samples"] / separation.samplerate
    if separation.recipe != recipe:
        raise ModelError(
            f"{type(model).__name__} derives its recipe; cannot override "
            f"{', '.join(sorted(changes))}: remove them from the card's recipe"
        )


def set_bag_segment(model: nn.Module, klass: str, segment: float) -> None:
    """Apply a bag's segment (seconds) as demucs' BagOfModels does.

    HTDemucs only accepts a segment no longer than the one it was trained on.
    """
    current = getattr(model, "segment", None)
    if klass == "HTDemucs" and current is not None and segment > float(current):
        return
    if current is not None:
        cast(_Segmented, model).segment = segment
    if getattr(model, "recipe", None) is not None:
        samplerate = as_separation_model(model).samplerate
        _update_recipe(model, segment_samples=int(segment * samplerate))


def apply_recipe_overrides(model: nn.Module, overrides: dict[str, Any]) -> None:
    """A card's `recipe` table (segment_seconds/segment_samples/overlap/batch_size)."""
    changes: dict[str, Any] = {}
    if "segment_seconds" in overrides:
        samplerate = as_separation_model(model).samplerate
        changes["segment_samples"] = round(overrides["segment_seconds"] * samplerate)
    for key in ("segment_samples", "overlap", "batch_size"):
        if key in overrides:
            changes[key] = overrides[key]
    if changes:
        _update_recipe(model, **changes)


def _member_indices(card: ModelCard, stems: list[str] | None) -> list[int]:
    """Bag members with a non-zero weight for the requested stems."""
    weights = card.member_weights()
    wanted: Sequence[int] = range(len(card.sources))
    if stems:
        lowered = [s.lower() for s in card.sources]
        wanted = [lowered.index(s.lower()) for s in stems if s.lower() in lowered]
        if not wanted:  # only the residual was asked for: it needs every source
            wanted = range(len(card.sources))
    return [i for i, row in enumerate(weights) if any(row[j] != 0 for j in wanted)]


def check_stems(sources: list[str], residual: str | None, stems: list[str] | None) -> None:
    """UnknownStem for a requested stem the model cannot produce."""
    from stemsplit.models.base import residual_alias

    known = {s.lower() for s in sources} | ({residual.lower()} if residual else set())
    alias = residual_alias(sources, residual)
    if alias is not None:
        known.add(alias)
    for stem in stems or []:
        if stem.lower() not in known:
            choices = ", ".join([*sources, *([residual] if residual else [])])
            pair = stem[3:] if stem.startswith("no_") and stem[3:] in sources else None
            hint = f"; for {stem} use --two-stems {pair} --keep {stem}" if pair else ""
            raise UnknownStem(f"stem {stem!r} is not produced by this model (one of "
                              f"{choices}){hint}")  # fmt: skip


def _single(model: nn.Module) -> list[list[float]]:
    return [[1.0] * len(as_separation_model(model).sources)]


def _load_card(card: ModelCard, stems: list[str] | None, **fetch_options: Any) -> ModelBundle:
    check_stems(list(card.sources), card.residual, stems)
    file_format = registry.get(card.architecture).file_format
    members, weights = _READERS[file_format].card(card, stems, fetch_options)
    for model in members:
        apply_recipe_overrides(model, card.recipe)
        _check_sources(model, card)
    return ModelBundle(
        name=card.name,
        sources=list(card.sources),
        members=members,
        weights=weights,
        residual=card.residual or getattr(members[0], "residual", None),
        samplerate=card.samplerate,
        card=card,
    )


def _check_sources(model: nn.Module, card: ModelCard) -> None:
    sources = as_separation_model(model).sources
    got = [s.lower() for s in sources]
    if got != [s.lower() for s in card.sources]:
        raise ModelError(
            f"model {card.name!r}: the checkpoint outputs {list(sources)} but the card "
            f"says {list(card.sources)}; fix the card's `sources`"
        )


def _read_demucs_file(path: Path, cached_as: str | None = None) -> checkpoints.DemucsPackage:
    if path.suffix == ".safetensors":
        return checkpoints.read_demucs_safetensors(path)
    return checkpoints.read_demucs_package(path, cached_as)


def _load_single(
    state: dict[str, torch.Tensor],
    config: Any,
    card: ModelCard | None,
    path: str,
    model_type: str | None = None,
) -> nn.Module:
    """A network from a bare state_dict and its config: an MSST yaml names the
    architecture by its keys; without one, the state dict's key names do (Conv-TasNet,
    whose arguments are then inferred from the shapes, or read from demucs v2's
    args.json)."""
    by_state = registry.recognise_state(state)
    if model_type is not None:
        architecture = registry.get(model_type)
    elif by_state is not None:
        architecture = by_state
    elif config is not None:
        architecture = checkpoints.msst_architecture(config, str(path))
    else:
        raise ModelError(
            f"{path}: cannot tell the architecture from a bare state_dict; pass its MSST yaml "
            "with --config"
        )
    if card is not None and card.architecture != architecture.name:
        raise ModelError(
            f"model {card.name!r}: the card says {card.architecture} but its files "
            f"describe {architecture.name}"
        )
    from stemsplit.models.no_init import skipped_random_init

    build = architecture.build_function()
    try:
        with skipped_random_init():  # the strict load below sets every weight
            if architecture.file_format == "state":
                options: dict[str, Any] = {}
                if card is not None:
                    options = {"sources": list(card.sources), "samplerate": card.samplerate}
                model = build(state, config, **options)
            else:
                model = build(architecture.name, config)
    except (TypeError, ValueError, KeyError) as err:
        raise ModelError(f"{path}: cannot build {architecture.name} ({_short(err)})") from err
    except ModelError as err:
        if str(path) in str(err):
            raise
        raise ModelError(f"{path}: {err}") from err
    return _load_state(model, state, str(path))


def _bag_member_file(folder: Path, signature: str) -> Path:
    for pattern in (f"{signature}.safetensors", f"{signature}.th", f"{signature}-*.th"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise ModelError(f"bag member {signature} not found in {folder} (.safetensors or .th)")


def _check_demucs_yaml(checkpoint: Path, config: Path, parsed: Any) -> None:
    """A Demucs package takes an MSST yaml only when it describes a Demucs network."""
    from stemsplit.errors import UsageError

    found = registry.recognise_config(parsed) if isinstance(parsed, dict) else None
    if found is None or found.family != "Demucs":
        what = f"describes {found.name}" if found else "describes no Demucs network"
        raise UsageError(
            f"--checkpoint {checkpoint} is a Demucs model but --config {config} {what}: "
            "drop --config (the package carries its own), or pass the matching config"
        )


def _load_checkpoint(
    checkpoint: Path, config: Path | None, stems: list[str] | None, model_type: str | None = None
) -> ModelBundle:
    name = checkpoint_label(checkpoint, config)
    local = recognise(checkpoint, config, model_type)
    members, weights = _READERS[local.file_format].local(local)
    sources = list(as_separation_model(members[0]).sources)
    residual = getattr(members[0], "residual", None)
    check_stems(sources, residual, stems)
    return ModelBundle(
        name=name,
        sources=sources,
        members=members,
        weights=weights,
        residual=residual,
        samplerate=int(as_separation_model(members[0]).samplerate),
        card=None,
    )


def _is_conv_tasnet(state: dict[str, torch.Tensor], model_type: str | None) -> bool:
    found = registry.get(model_type) if model_type else registry.recognise_state(state)
    return found is not None and found.name == "conv_tasnet"


def _tasnet_args_beside(checkpoint: Path) -> Any:
    """Demucs v2's `args.json` beside a Conv-TasNet state dict: the weights give every
    argument but the segment length, which changes the chunks (a 2 s model run in 8 s
    chunks: 55 dB instead of 152 dB against demucs v2), so without it, say so."""
    beside = checkpoint.parent / "args.json"
    if beside.is_file():
        from stemsplit.zoo.safe_yaml import load_yaml

        log.info("%s: arguments from %s", checkpoint.name, beside)
        return load_yaml(beside)
    log.warning("%s: no args.json beside it, so its segment length is unknown: using demucs "
                "v2's default, 8 s chunks; pass the model's args.json with --config",
                checkpoint)  # fmt: skip
    return None


# -- How each file format of the registry becomes networks (`_READERS`) --


def _one(model: nn.Module) -> Members:
    return [model], _single(model)


def _demucs_card(card: ModelCard, stems: list[str] | None,
                 fetch_options: dict[str, Any]) -> Members:  # fmt: skip
    """The card's bag members that the stems need (the others are not downloaded)."""
    keep = _member_indices(card, stems)
    files = card.checkpoint_files()
    paths = fetch.ensure_files(card, files=[files[i] for i in keep], **fetch_options)
    all_weights = card.member_weights()
    members = _demucs_members(paths, card.bag_segment, cached_as=card.name)
    return members, [all_weights[i] for i in keep]


def _demucs_local(local: LocalCheckpoint) -> Members:
    """A Demucs package, or a bag yaml whose members lie beside it."""
    if not isinstance(local.contents, checkpoints.DemucsBag):
        return _one(build_demucs_member(local.contents, str(local.path)))
    bag, path = local.contents, local.path
    members = _demucs_members((_bag_member_file(path.parent, s) for s in bag.models), bag.segment)
    sources = list(as_separation_model(members[0]).sources)
    if any(list(as_separation_model(m).sources) != sources for m in members):
        raise ModelError(f"{path}: the bag's members output different sources")
    weights = bag.weights or [[1.0] * len(sources) for _ in members]
    if len(weights) != len(members) or any(len(row) != len(sources) for row in weights):
        raise ModelError(f"{path}: bag weights must be one row per model and source")
    return members, weights


def _demucs_members(paths: Iterable[Path], segment: float | None,
                    cached_as: str | None = None) -> list[nn.Module]:  # fmt: skip
    """A bag's networks, each built from its file, with the bag's segment (seconds)."""
    members = []
    for path in paths:
        package = _read_demucs_file(path, cached_as)
        model = build_demucs_member(package, str(path))
        if segment is not None:
            set_bag_segment(model, package.klass, segment)
        members.append(model)
    return members


def _state_card(card: ModelCard, stems: list[str] | None,
                fetch_options: dict[str, Any]) -> Members:  # fmt: skip
    """A state dict and its config (an MSST yaml), both fetched."""
    paths = fetch.ensure_files(card, **fetch_options)
    downloaded = {spec.name: path for spec, path in zip(card.files, paths)}
    checkpoint = downloaded[card.checkpoint_files()[0].name]
    config = catalog.load_card_config(card, downloaded)
    state = checkpoints.read_state_dict(checkpoint, cached_as=card.name)
    return _one(_load_single(state, config, card, str(checkpoint)))


def _state_local(local: LocalCheckpoint) -> Members:
    """A state dict: the architecture from `--model-type`, its key names or its MSST
    yaml; with no `--config`, the config of the zoo card whose file it is, or demucs
    v2's args.json beside a Conv-TasNet."""
    checkpoint, config, state = local.path, local.config, local.contents
    model_type = local.model_type
    parsed = None
    if config is not None:
        from stemsplit.zoo.safe_yaml import load_yaml

        parsed = load_yaml(config)
        if local.package_weights:
            _check_demucs_yaml(checkpoint, config, parsed)
        elif model_type is None and registry.recognise_state(state) is None:
            checkpoints.msst_architecture(parsed, str(config))  # errors name the yaml
    elif registry.recognise_state(state) is None and (card := known_config(checkpoint)):
        log.info("%s: using the config of zoo model %s", checkpoint.name, card.name)
        parsed = catalog.load_card_config(card)
    elif _is_conv_tasnet(state, model_type):
        parsed = _tasnet_args_beside(checkpoint)
    return _one(_load_single(state, parsed, None, str(checkpoint), model_type))


def _onnx_card(card: ModelCard, stems: list[str] | None,
               fetch_options: dict[str, Any]) -> Members:  # fmt: skip
    """UVR MDX-Net: settings by the file's MD5, overlaid by the card's inline config."""
    path = fetch.ensure_files(card, **fetch_options)[0]
    return _one(_check_samplerate(uvr_data.build_mdx_model(path, _inline_config(card)), card))


def _onnx_local(local: LocalCheckpoint) -> Members:
    """UVR MDX-Net: settings by the file's MD5 or a `--config` JSON."""
    return _one(uvr_data.build_mdx_model(local.path, local.config))


def _vr_card(card: ModelCard, stems: list[str] | None,
             fetch_options: dict[str, Any]) -> Members:  # fmt: skip
    """UVR VR: settings by the file's MD5, overlaid by the card's inline config."""
    path = fetch.ensure_files(card, **fetch_options)[0]
    state = checkpoints.read_state_dict(path, cached_as=card.name)
    model = uvr_data.build_vr_model(state, path, _inline_config(card))
    return _one(_check_samplerate(model, card))


def _vr_local(local: LocalCheckpoint) -> Members:
    """UVR VR: settings by the file's MD5 or a `--config` JSON."""
    return _one(uvr_data.build_vr_model(local.contents, local.path, local.config))


def _inline_config(card: ModelCard) -> Mapping[str, Any] | None:
    return card.config if isinstance(card.config, Mapping) else None


def _check_samplerate(model: nn.Module, card: ModelCard) -> nn.Module:
    """A UVR model's rate comes from its model data, which may disagree with its card."""
    samplerate = as_separation_model(model).samplerate
    if int(samplerate) != int(card.samplerate):
        raise ModelError(f"model {card.name!r}: the model runs at {samplerate} Hz but "
                         f"the card says {card.samplerate}; fix the card's samplerate")
    return model


@dataclass(frozen=True)
class _Reader:
    """How one file format becomes networks and their bag weights: from a card's files
    (fetched here), or from a local checkpoint (`local.recognise` read what told its
    format)."""

    card: Callable[[ModelCard, list[str] | None, dict[str, Any]], Members]
    local: Callable[[LocalCheckpoint], Members]


# The registry says which file format each architecture's file is; this, how each is read.
_READERS: dict[FileFormat, _Reader] = {
    "demucs": _Reader(_demucs_card, _demucs_local),
    "msst": _Reader(_state_card, _state_local),
    "state": _Reader(_state_card, _state_local),
    "onnx": _Reader(_onnx_card, _onnx_local),
    "uvr-vr": _Reader(_vr_card, _vr_local),
}


def _missing(path: Path) -> str:
    return "is a folder, not a file" if path.is_dir() else "does not exist; check the path"


def load_bundle(
    name: str | None = None,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    stems: list[str] | None = None,
    *,
    offline: bool | None = None,
    model_dir: str | Path | None = None,
    progress: fetch.ProgressCallback | None = None,
    model_type: str | None = None,
) -> ModelBundle:
    """A zoo model by name, or a local checkpoint (with its config for MSST).

    For bags, members whose weights are all zero for the requested `stems` are
    neither downloaded nor built (`htdemucs_ft`, stems=["vocals"]: one model).
    """
    if (name is None) == (checkpoint is None):
        from stemsplit.errors import UsageError

        raise UsageError("give either a model name or --checkpoint FILE, not both or neither")
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelError(f"checkpoint {path} {_missing(path)}")
        config_path = Path(config).expanduser() if config is not None else None
        if config_path is not None and not config_path.is_file():
            raise ModelError(f"config {config_path} {_missing(config_path)}")
        kind = checkpoints.audio_kind(config_path) if config_path is not None else None
        if kind is not None:  # `--config song.wav`
            raise ModelError(f"--config {config_path} is not a config: it looks like {kind}; "
                             "give the model's .yaml (MSST) or .json (UVR, Demucs v2's "
                             "args.json)")  # fmt: skip
        return _load_checkpoint(path, config_path, stems, model_type)
    card = catalog.get_card(str(name))
    return _load_card(card, stems, offline=offline, model_dir=model_dir, progress=progress)
