"""Read upstream checkpoint formats safely: data only, never code.

- Demucs legacy packages (`.th`): a pickled dict `{klass, args, kwargs, state,
  training_args}`. Read with `torch.load(weights_only=True)`; the only non-tensor
  globals allowed are stand-ins for the Demucs model classes (we keep the class NAME
  and never import demucs) and `fractions.Fraction` (HTDemucs' `segment`).
- Demucs safetensors (Hugging Face layout): tensors plus json metadata `klass`,
  `args`, `kwargs` (fractions as `{"_type": "fraction", ...}`), and a bag yaml.
  Parsed here from the format itself (8-byte header length, json header, raw data).
- MSST `.ckpt`: a state_dict, maybe nested under `state`/`state_dict`/
  `model_state_dict`, maybe with a `model.` prefix on every key; its yaml config.
- Demucs v2 Conv-TasNet: a plain state_dict.

A pickle that asks for any other global (e.g. `os.system` in a `__reduce__`) raises
UnsafeCheckpoint before anything runs; truncated or corrupt files raise ModelError.
"""

from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError, UnsafeCheckpoint
from stemsplit.zoo.safe_yaml import load_yaml

if TYPE_CHECKING:
    import torch

    from stemsplit.models.registry import Architecture

# Classes a Demucs package may name in `klass`, by their pickled path.
DEMUCS_CLASSES = {
    "demucs.htdemucs.HTDemucs": "HTDemucs",
    "demucs.hdemucs.HDemucs": "HDemucs",
    "demucs.demucs.Demucs": "Demucs",
}
STATE_KEYS = ("state_dict", "model_state_dict", "state", "model")
MSST_DEMUCS_SECTIONS = ("htdemucs", "hdemucs", "demucs")


class ClassName:
    """Stand-in for a pickled class reference: remembers the name, does nothing else."""

    name = ""


def _stub(path: str) -> type[ClassName]:
    module, _, name = path.rpartition(".")
    return type(name, (ClassName,), {"name": name, "__module__": module, "__qualname__": name})


_STUBS = [(_stub(path), path) for path in DEMUCS_CLASSES]


@dataclass
class DemucsPackage:
    """What a Demucs checkpoint holds: the class name, init arguments and weights."""

    klass: str
    args: list[Any]
    kwargs: dict[str, Any]
    state: dict[str, torch.Tensor]
    training_args: Any = None


_AUDIO_MAGIC = ((b"RIFF", "WAV audio"), (b"fLaC", "FLAC audio"), (b"OggS", "Ogg audio"),
                (b"ID3", "MP3 audio"), (b"FORM", "AIFF audio"), (b"\xff\xfb", "MP3 audio"),
                (b"\xff\xf3", "MP3 audio"), (b"\xff\xf1", "AAC audio"))  # fmt: skip


def audio_kind(path: Path) -> str | None:
    """What a file obviously is when it is not a model (an audio file given by mistake)."""
    with open(path, "rb") as handle:
        head = handle.read(12)
    for magic, what in _AUDIO_MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":
        return "MP4/M4A audio or video"
    return None


def read_torch_file(path: str | Path, cached_as: str | None = None) -> Any:
    """`torch.load` with weights_only and the Demucs allow-list; safe for any file.

    `cached_as` names the zoo model when `path` is in the download cache: only then is
    deleting it and downloading again the advice for a corrupt file.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ModelError(f"checkpoint {path} {what}")
    kind = audio_kind(path)
    if kind is not None:
        raise ModelError(f"{path}: not a model checkpoint: it looks like {kind}")
    try:
        with torch.serialization.safe_globals([*_STUBS, Fraction]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": noise here
            return torch.load(path, map_location="cpu", weights_only=True,
                              mmap=_mappable(path))  # fmt: skip
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        foreign = None if found else _foreign_global(path)
        if found or foreign or re.search(r"Can only (create|build)|reduce", str(err)):
            what = found.group(1) if found else foreign or "a Python object"
            raise UnsafeCheckpoint(
                f"{path}: refused, the file asks to load {what}, which is not plain data; "
                "use a checkpoint from a trusted upstream source"
            ) from err
        raise ModelError(
            f"{path}: not a readable checkpoint ({_unpickler_reason(err)}); "
            "expected a PyTorch .th/.ckpt/.pt or .safetensors file"
        ) from err
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, AttributeError,
            IndexError, TypeError, MemoryError, OverflowError, struct.error,
            AssertionError) as err:  # torch's legacy reader asserts on missing storages
        advice = (f"; remove it with `stemsplit models rm {cached_as}` and download it again"
                  if cached_as else ""
                  )  # fmt: skip
        raise ModelError(
            f"{path}: truncated or corrupt checkpoint ({_first_line(err)}){advice}"
        ) from err


def _mappable(path: str | Path) -> bool:
    """Zip-format files (torch >= 1.6) are memory-mapped, so the tensors are read once,
    when the model copies them in (0.1 s less for the released HTDemucs); but only when
    every entry is stored uncompressed: torch maps a deflated entry's bytes as if they
    were the tensor's and returns garbage without an error (a re-zipped checkpoint)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return all(entry.compress_type == zipfile.ZIP_STORED for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False  # not a zip (legacy format): torch reads it whole


_SCAN_BYTES = 1 << 22  # globals sit near a pickle's start; never scan more than 4 MiB
_PLAIN_MODULES = ("torch", "collections", "fractions", "demucs", "numpy", "_codecs")


def _foreign_global(path: Path) -> str | None:
    """The first global a raw (non-zip) pickle names outside torch's data types.

    Only reads opcodes (`pickletools.genops` executes nothing); explains why
    torch refused a legacy pickle that it stopped reading before its GLOBAL.
    """
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        return None
    strings: list[str] = []
    try:
        with open(path, "rb") as stream:
            # From memory: genops reads a length first, and a damaged 8-byte length
            # makes a file read try to allocate it (found by fuzzing: MemoryError).
            head = io.BytesIO(stream.read(_SCAN_BYTES))
        for opcode, arg, _ in pickletools.genops(head):
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.append(arg)
            name = None
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                name = arg.replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                name = f"{strings[-2]}.{strings[-1]}"
            if name and name.split(".")[0] not in _PLAIN_MODULES:
                return name
    except Exception:  # best effort: only improves an error message
        return None
    return None


def _unpickler_reason(err: BaseException) -> str:
    """The reason inside torch's weights_only refusal, without its advice to disable it."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.S)
    reason = " ".join(found.group(1).split()) if found else ""
    return reason[:200] or _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def is_demucs_package(obj: Any) -> bool:
    """A dict with Demucs' package keys."""
    return isinstance(obj, dict) and {"klass", "args", "kwargs", "state"} <= set(obj)


def demucs_package(obj: Any, source: str) -> DemucsPackage:
    """Check and convert a loaded Demucs package dict."""
    if not is_demucs_package(obj):
        raise ModelError(f"{source}: not a Demucs package (needs klass, args, kwargs, state)")
    klass = obj["klass"]
    if isinstance(klass, type) and issubclass(klass, ClassName):
        name = klass.name
    elif isinstance(klass, str):
        name = DEMUCS_CLASSES.get(klass, klass.rsplit(".", 1)[-1])
    else:
        raise ModelError(f"{source}: unexpected klass {klass!r}")
    state = obj["state"]
    if not isinstance(state, dict) or state.get("__quantized"):
        raise ModelError(
            f"{source}: quantized (diffq) Demucs states are not supported; use the "
            "non-quantized model (e.g. mdx_extra instead of mdx_extra_q)"
        )
    return DemucsPackage(
        klass=name,
        args=list(obj["args"]),
        kwargs=dict(obj["kwargs"]),
        state=dict(state),
        training_args=obj.get("training_args"),
    )


def read_demucs_package(path: str | Path, cached_as: str | None = None) -> DemucsPackage:
    """A legacy Demucs `.th` package."""
    return demucs_package(read_torch_file(path, cached_as), str(path))


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool",
}  # fmt: skip


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, parsed from its layout."""
    import torch

    path = Path(path)
    try:
        raw = path.read_bytes()
        header_size = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or 8 + header_size > len(raw):
            raise ValueError("header runs past the end of the file")
        header = json.loads(raw[8 : 8 + header_size])
        data = memoryview(raw)[8 + header_size :]
        metadata = header.pop("__metadata__", None) or {}
        tensors = {}
        for name, info in header.items():
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= len(data):
                raise ValueError(f"tensor {name} lies outside the file")
            dtype = getattr(torch, _SAFETENSORS_DTYPES[info["dtype"]])
            chunk = bytearray(data[begin:end])
            flat = torch.frombuffer(chunk, dtype=dtype) if chunk else torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(info["shape"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ModelError(f"{path}: truncated or corrupt safetensors file ({err})") from err
    return tensors, metadata


def _decode_fractions(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(value["numerator"], value["denominator"])
        return {key: _decode_fractions(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_fractions(item) for item in value]
    return value


def read_demucs_safetensors(path: str | Path) -> DemucsPackage:
    """A Demucs model exported to safetensors with klass/args/kwargs metadata."""
    tensors, metadata = read_safetensors(path)
    if "klass" not in metadata:
        raise ModelError(f"{path}: safetensors without Demucs metadata (klass, args, kwargs)")
    if "structure" in metadata:
        raise ModelError(f"{path}: quantized (diffq) Demucs states are not supported")
    try:
        args = _decode_fractions(json.loads(metadata.get("args", "[]")))
        kwargs = _decode_fractions(json.loads(metadata.get("kwargs", "{}")))
    except ValueError as err:
        raise ModelError(f"{path}: invalid json in the safetensors metadata ({err})") from err
    package = {"klass": metadata["klass"], "args": args, "kwargs": kwargs, "state": tensors}
    return demucs_package(package, str(path))


@dataclass
class DemucsBag:
    """A Demucs bag yaml: member signatures, per-source weights, segment."""

    models: list[str]
    weights: list[list[float]] | None
    segment: float | None


def read_demucs_bag(path: str | Path) -> DemucsBag:
    """Parse a bag yaml (`models: [sig, ...]`, optional `weights`, `segment`)."""
    data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ModelError(f"{path}: not a Demucs bag yaml (needs a `models` list)")
    weights = data.get("weights")
    segment = data.get("segment")
    return DemucsBag(
        models=[str(m) for m in data["models"]],
        weights=[[float(w) for w in row] for row in weights] if weights else None,
        segment=float(segment) if segment is not None else None,
    )


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: under a known key, `model.` prefix removed."""
    import torch

    for key in STATE_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and obj[key]:
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise ModelError(f"{source}: no state_dict found in the checkpoint")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state or not all(isinstance(k, str) for k in state):
        raise ModelError(f"{source}: the checkpoint holds no named tensors")
    if all(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path, cached_as: str | None = None) -> dict[str, torch.Tensor]:
    """An MSST `.ckpt` or Demucs v2 state_dict file, unwrapped."""
    return unwrap_state_dict(read_torch_file(path, cached_as), str(path))


def msst_architecture(config: Any, source: str = "config") -> Architecture:
    """The MSST architecture an MSST yaml describes, recognised by its model keys."""
    from stemsplit.models import registry

    # MSST's Demucs family: `model: htdemucs|hdemucs|demucs` names the section holding
    # the hyperparameters; MSST runs all three as `--model_type htdemucs`.
    if (
        isinstance(config, dict)
        and config.get("model") in MSST_DEMUCS_SECTIONS
        and isinstance(config.get(config["model"]), dict)
    ):
        return registry.get("htdemucs")
    if not isinstance(config, dict) or not any(
        isinstance(config.get(entry.config_section), dict)
        for entry in registry.ARCHITECTURES.values()
    ):
        raise ModelError(f"{source}: not an MSST config (no `model` section)")
    found = registry.recognise_config(config)
    if found is None:
        known = [e for e in registry.ARCHITECTURES.values() if e.config_markers]
        raise ModelError(
            f"{source}: the model section matches no known MSST architecture ("
            + ", ".join(f"{e.name}: {'+'.join(e.config_markers)}" for e in known)
            + "); name it with --model-type"
        )
    return found
