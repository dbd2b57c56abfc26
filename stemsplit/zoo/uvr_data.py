"""UVR model data: the settings UVR keys by a model file's MD5, and `--config` JSONs.

UVR's MDX-Net (`.onnx`) and VR Architecture (`.pth`) files carry no settings; UVR and
audio-separator look them up by the MD5 of the file's last 10,240,000 bytes (the
whole file when smaller) in `weights/uvr/{mdx,vr}_model_data.json` (UVR's
model_data.json and model_data_new.json with audio-separator 0.47.1's additions).
VR records name a band-split layout, `weights/uvr/modelparams/<vr_model_param>.json`.

A user's `--config FILE.json` holds a record (bare, or keyed by MD5 as UVR stores it)
and, optionally, audio-separator's settings under its own names: `mdx_params`
(hop_length, segment_size, overlap, batch_size, enable_denoise), `vr_params`
(batch_size, window_size, aggression, enable_tta, enable_post_process,
post_process_threshold, high_end_process), `normalization_threshold`,
`amplification_threshold` (the peak limits audio-separator applies to the MDX input and
to every stem it writes). A VR config may give the layout inline as `modelparams`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError
from stemsplit.models import registry

if TYPE_CHECKING:
    import torch
    from torch import nn

HASH_BYTES = 10000 * 1024
_MD5 = re.compile(r"^[0-9a-f]{32}$")
MDX_FIELDS = ("compensate", "mdx_dim_f_set", "mdx_dim_t_set", "mdx_n_fft_scale_set", "primary_stem")
VR_FIELDS = ("vr_model_param", "primary_stem")
SETTINGS = ("mdx_params", "vr_params", "normalization_threshold", "amplification_threshold",
            "modelparams")  # fmt: skip


def data_dir() -> Path:
    from stemsplit.zoo.catalog import weights_dir

    return weights_dir() / "uvr"


def uvr_hash(path: str | Path) -> str:
    """UVR's model hash: MD5 of the last 10,240,000 bytes (or of the whole file)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as file:
        if size >= HASH_BYTES:
            file.seek(size - HASH_BYTES)
        return hashlib.md5(file.read()).hexdigest()


@lru_cache(maxsize=4)
def model_data(kind: str) -> dict[str, dict[str, Any]]:
    """UVR's hash -> record table for "mdx" or "vr"."""
    path = data_dir() / f"{kind}_model_data.json"
    return json.loads(path.read_text(encoding="utf-8"))


def modelparams(name: str) -> dict[str, Any]:
    """A VR band-split layout by its name (UVR's `vr_model_param`)."""
    path = data_dir() / "modelparams" / f"{Path(str(name)).name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.json")))
        raise ModelError(f"unknown VR modelparams {name!r}: one of {known}, or give 'modelparams'")
    return json.loads(path.read_text(encoding="utf-8"))


def read_config(path: str | Path, model_hash: str | None = None) -> dict[str, Any]:
    """A `--config` JSON as one flat record (an MD5-keyed table is resolved by hash)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelError(f"config {path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise ModelError(f"config {path}: expected a JSON object (a UVR model-data record)")
    keyed = {k: v for k, v in data.items() if _MD5.match(str(k).lower()) and isinstance(v, dict)}
    if keyed:
        rest = {k: v for k, v in data.items() if k not in keyed}
        lowered = {k.lower(): v for k, v in keyed.items()}
        if model_hash in lowered:
            return {**lowered[model_hash], **rest}
        if len(keyed) == 1:
            return {**next(iter(keyed.values())), **rest}
        raise ModelError(f"config {path}: no record for this file's MD5 {model_hash}")
    return data


def _fields_error(path: Path, kind: str, digest: str) -> ModelError:
    if kind == "mdx":
        need = ", ".join(MDX_FIELDS)
        what = "MDX-Net"
    else:
        need = ", ".join(VR_FIELDS) + " (and nout, nout_lstm for VR 5.1 nets)"
        what = "VR"
    return ModelError(
        f"{path.name}: unknown {what} model (UVR hash {digest}); pass --config FILE.json "
        f"with its model data: {need}"
    )


def resolve_params(path: str | Path, kind: str, config: str | Path | Mapping | None) -> dict:
    """The model's parameters: the hash-keyed record, overlaid by the user's config."""
    path = Path(path)
    digest = uvr_hash(path)
    record = dict(model_data(kind).get(digest, {}))
    if isinstance(config, Mapping):
        record.update(config)
    elif config is not None:
        record.update(read_config(config, digest))
    required: tuple[str, ...] = MDX_FIELDS[:-1] if kind == "mdx" else VR_FIELDS[:1]
    if kind == "vr" and "modelparams" in record:
        required = ()
    if any(field not in record for field in required):
        raise _fields_error(path, kind, digest)
    if kind == "vr" and "modelparams" not in record:
        record["modelparams"] = modelparams(record["vr_model_param"])
    elif kind == "vr" and isinstance(record["modelparams"], str):
        record["modelparams"] = modelparams(record["modelparams"])
    return record


def build_mdx_model(path: str | Path, config: str | Path | Mapping | None) -> nn.Module:
    params = resolve_params(path, "mdx", config)
    return _build("mdx", Path(path), params)


def build_vr_model(state: Mapping[str, torch.Tensor], path: str | Path,
                   config: str | Path | Mapping | None) -> nn.Module:
    params = resolve_params(path, "vr", config)
    return _build("vr", state, params)


def _build(architecture: str, first: Any, params: Mapping[str, Any]) -> nn.Module:
    build = registry.get(architecture).build_function()
    try:
        return build(first, params)
    except (TypeError, ValueError, KeyError) as err:
        text = " ".join(str(err).split())[:300]
        raise ModelError(f"cannot build the {architecture} model ({text})") from err

