"""Demucs v2 Conv-TasNet constructor arguments read from a state_dict's shapes alone.

The published `tasnet` checkpoints are plain state_dicts with no arguments beside them;
the layer sizes, depth, causality and norm kind are all in the tensors' shapes.
"""

from __future__ import annotations

from typing import Any

import torch

from stemsplit.errors import ModelError
from stemsplit.models.conv_tasnet.network import (
    DEFAULT_SAMPLERATE,
    DEFAULT_SEGMENT_LENGTH,
    DEFAULT_SOURCES,
    ConvTasNet,
    ConvTasNetConfig,
)

_PREFIX = "separator.network."


def _shape(state_dict: dict[str, Any], key: str) -> tuple[int, ...]:
    try:
        return tuple(state_dict[key].shape)
    except (KeyError, AttributeError) as err:
        raise ModelError(
            f"not a Demucs v2 Conv-TasNet state_dict: {key!r} is missing or not a tensor"
        ) from err


def _infer_norm_type(state_dict: dict[str, Any]) -> str:
    """gLN and cLN have the same parameters: gamma/beta is read as gLN (v2's choice)."""
    stem = _PREFIX + "2.0.0.net.2."
    if stem + "gamma" in state_dict:
        return "gLN"
    if stem + "running_mean" in state_dict:
        return "BN"
    return "id"


def infer_conv_tasnet_args(
    state_dict: dict[str, Any],
    *,
    sources: list[str] | None = None,
    samplerate: int = DEFAULT_SAMPLERATE,
    segment_length: int = DEFAULT_SEGMENT_LENGTH,
) -> dict[str, Any]:
    """Demucs v2 ConvTasNet kwargs from a state_dict's keys and shapes alone.

    N, L, B, H, P, X, R, audio_channels, the number of sources, causality (the
    causal trim shifts the pointwise conv's index) and the norm kind are read from
    the tensors; gLN and cLN cannot be told apart (gLN assumed), nor can the mask
    non-linearity (ReLU assumed). Sources default to Demucs' four stems when there
    are four, else `source0`, `source1`, ...; the result is checked against every
    key and shape of the model it describes (ModelError on any mismatch).
    """
    num_filters, audio_channels, filter_length = _shape(state_dict, "encoder.conv1d_U.weight")
    bottleneck = _shape(state_dict, _PREFIX + "1.weight")[0]
    hidden = _shape(state_dict, _PREFIX + "2.0.0.net.0.weight")[0]
    kernel = _shape(state_dict, _PREFIX + "2.0.0.net.3.net.0.weight")[-1]
    mask_channels = _shape(state_dict, _PREFIX + "3.weight")[0]
    blocks = set()
    for key in state_dict:
        parts = key[len(_PREFIX) :].split(".")
        if key.startswith(_PREFIX + "2.") and len(parts) > 2 and parts[1].isdigit():
            if not parts[2].isdigit():
                raise ModelError(f"unexpected Conv-TasNet key {key!r}")
            blocks.add((int(parts[1]), int(parts[2])))
    if not blocks:
        raise ModelError("not a Demucs v2 Conv-TasNet state_dict: no temporal blocks")
    num_repeats = 1 + max(r for r, _ in blocks)
    per_repeat = 1 + max(x for _, x in blocks)
    if mask_channels % num_filters:
        raise ModelError(
            f"Conv-TasNet mask conv has {mask_channels} channels, not a multiple of N={num_filters}"
        )
    num_sources = mask_channels // num_filters
    if sources is None:
        if num_sources == len(DEFAULT_SOURCES):
            sources = list(DEFAULT_SOURCES)
        else:
            sources = [f"source{i}" for i in range(num_sources)]
    elif len(sources) != num_sources:
        raise ModelError(
            f"the checkpoint has {num_sources} sources but {len(sources)} names were given"
        )
    config = ConvTasNetConfig.from_kwargs(
        {
            "sources": list(sources),
            "N": num_filters,
            "L": filter_length,
            "B": bottleneck,
            "H": hidden,
            "P": kernel,
            "X": per_repeat,
            "R": num_repeats,
            "audio_channels": audio_channels,
            "norm_type": _infer_norm_type(state_dict),
            "causal": _PREFIX + "2.0.0.net.3.net.4.weight" in state_dict,
            "samplerate": samplerate,
            "segment_length": segment_length,
        }
    )
    check_state_dict(config, state_dict)
    return config.to_kwargs()


def check_state_dict(config: ConvTasNetConfig, state_dict: dict[str, Any]) -> None:
    """ModelError unless `state_dict` has exactly the keys and shapes of `config`'s model."""
    _compare_layout(lambda: ConvTasNet(config), state_dict, "Demucs v2 tasnet")


def _compare_layout(build: Any, state_dict: dict[str, Any], kind: str) -> None:
    """ModelError unless `state_dict` matches the keys and shapes of `build()`'s model."""
    with torch.device("meta"):  # shapes only: nothing allocated, whatever the size
        expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(
        k for k in set(expected) & set(state_dict) if _shape(state_dict, k) != expected[k]
    )
    if missing or unexpected or wrong:
        details = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
            if keys
        )
        raise ModelError(f"inconsistent Conv-TasNet state_dict ({details}): not a {kind}")
