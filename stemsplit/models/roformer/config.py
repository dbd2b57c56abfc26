"""RoFormer hyperparameters: frozen dataclasses read from an MSST yaml config.

MSST builds its models as `BSRoformer(**config.model)` / `MelBandRoformer(**config.model)`,
so every keyword those constructors accept may appear in a config (likewise
`BSConformer` / `MelBandConformer`: the conformer functions below). We accept the
same keys: the ones that shape the network land in the dataclasses below, the
training-only ones (dropouts, multi-resolution STFT loss, gradient checkpointing,
flash switch) are accepted and ignored, and anything else is a `ModelError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from stemsplit.errors import ModelError

# Keys MSST's constructors accept that change nothing at inference time.
_TRAINING_ONLY_KEYS = frozenset(
    {
        "attn_dropout",
        "ff_dropout",
        "flash_attn",  # we always use scaled_dot_product_attention: same maths
        "dim_freqs_in",  # unused by MSST too: the STFT settings decide
        "multi_stft_resolution_loss_weight",
        "multi_stft_resolutions_window_sizes",
        "multi_stft_hop_size",
        "multi_stft_normalized",
        "multi_stft_window_fn",
        "use_torch_checkpoint",
        # SageAttention kernels (newer MSST): a speed switch for the same attention
        # (quantised on GPU); we always use scaled_dot_product_attention.
        "sage_attention",
    }
)
_COMMON_KEYS = frozenset(
    {
        "dim",
        "depth",
        "stereo",
        "num_stems",
        "time_transformer_depth",
        "freq_transformer_depth",
        "linear_transformer_depth",
        "dim_head",
        "heads",
        "stft_n_fft",
        "stft_hop_length",
        "stft_win_length",
        "stft_normalized",
        "stft_window_fn",
        "zero_dc",
        "mask_estimator_depth",
        "mlp_expansion_factor",
        "skip_connection",
        "use_pope",
    }
)
_BS_KEYS = _COMMON_KEYS | _TRAINING_ONLY_KEYS | {"freqs_per_bands"}
# Mel's `match_input_audio_length` only decides whether MSST crops the output to
# a multiple of the hop; our networks always return the input's length.
_MEL_KEYS = (
    _COMMON_KEYS
    | _TRAINING_ONLY_KEYS
    | {
        "num_bands",
        "sample_rate",
        "match_input_audio_length",
    }
)

# The experimental RoFormers (bs_roformer_experimental.py, mel_band_roformer_experimental.py)
# take these instead of zero_dc (they never zero the DC bin) and use_pope.
_EXPERIMENTAL_KEYS = frozenset({"use_value_residual_learning", "num_residual_streams"})
_NOT_EXPERIMENTAL = frozenset({"zero_dc", "use_pope"})

# The conformers (bs_conformer.py, mel_band_conformer.py) name the trunk depths
# `*_conformer_depth`, add the conformer blocks' three keys and take no use_pope.
# MSST's constructors would refuse sage_attention, but its own conformer configs
# carry it (`sage_attention: false`); accepted and ignored, as for the RoFormers.
_CONFORMER_DEPTHS = {
    "time_conformer_depth": "time_transformer_depth",
    "freq_conformer_depth": "freq_transformer_depth",
    "linear_conformer_depth": "linear_transformer_depth",
}
_CONFORMER_BLOCK_KEYS = frozenset({"ff_mult", "conv_expansion_factor", "conv_kernel_size"})
_NOT_CONFORMER = frozenset({*_CONFORMER_DEPTHS.values(), "use_pope"})

# MSST's BSRoformer default band layout (62 bands over 1025 bins of a 2048 FFT).
DEFAULT_FREQS_PER_BANDS: tuple[int, ...] = (
    (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
)


@dataclass(frozen=True)
class StftConfig:
    """STFT of the network (hann window of `win_length`, centred, as torch.stft)."""

    n_fft: int = 2048
    hop_length: int = 512
    win_length: int = 2048
    normalized: bool = False

    @property
    def num_bins(self) -> int:
        """Frequency bins of a one-sided STFT."""
        return self.n_fft // 2 + 1


@dataclass(frozen=True)
class TrunkConfig:
    """The part both architectures share: axial transformers and mask estimators.

    `depth` blocks, each of an optional linear-attention transformer over all
    (time, band) tokens, a time transformer and a band transformer.
    """

    dim: int
    depth: int
    stereo: bool = False
    num_stems: int = 1
    time_transformer_depth: int = 2
    freq_transformer_depth: int = 2
    linear_transformer_depth: int = 0
    heads: int = 8
    dim_head: int = 64
    mask_estimator_depth: int = 2
    mlp_expansion_factor: int = 4
    zero_dc: bool = True
    skip_connection: bool = False
    # MSST's `use_pope` ("PolarFormer"): PoPE positions instead of rotary (polar.py).
    use_pope: bool = False
    # Experimental RoFormers: later blocks get the first block's values (and then run
    # without residuals, as MSST's code does); with `value_residual_learning` their
    # attentions also learn how much of them to mix in.
    value_residuals: bool = False
    value_residual_learning: bool = False

    @property
    def audio_channels(self) -> int:
        """Channels the network expects: 2 if stereo else 1."""
        return 2 if self.stereo else 1


@dataclass(frozen=True)
class BSRoformerConfig:
    """BS-RoFormer: contiguous bands of `freqs_per_bands` STFT bins each."""

    trunk: TrunkConfig
    stft: StftConfig
    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS


@dataclass(frozen=True)
class ConformerConfig:
    """The conformer block's own settings (MSST's bs_conformer / mel_band_conformer):
    macaron feed-forwards of `ff_mult` width and a depthwise-convolution module with
    `conv_expansion_factor` channels per feature and an odd `conv_kernel_size`."""

    ff_mult: int = 4
    conv_expansion_factor: int = 2
    conv_kernel_size: int = 31


@dataclass(frozen=True)
class MelBandRoformerConfig:
    """Mel-Band RoFormer: `num_bands` overlapping mel bands at `sample_rate`."""

    trunk: TrunkConfig
    stft: StftConfig
    num_bands: int = 60
    sample_rate: int = 44100


_INT_KEYS = (
    "dim",
    "depth",
    "num_stems",
    "time_transformer_depth",
    "freq_transformer_depth",
    "linear_transformer_depth",
    "heads",
    "dim_head",
    "mask_estimator_depth",
    "mlp_expansion_factor",
    "stft_n_fft",
    "stft_hop_length",
    "stft_win_length",
    "num_bands",
    "sample_rate",
    *_CONFORMER_DEPTHS,
    *sorted(_CONFORMER_BLOCK_KEYS),
)
_POSITIVE_KEYS = frozenset(_INT_KEYS) - {"linear_transformer_depth", "linear_conformer_depth"}


def _check_model_section(model: Mapping[str, Any], allowed: frozenset[str], name: str) -> None:
    """Reject what MSST would reject, and options we do not implement."""
    unknown = sorted(set(model) - allowed)
    if unknown:
        raise ModelError(
            f"{name} config: unknown model keys {unknown}; check the config's model section"
        )
    for key in ("dim", "depth"):
        if key not in model:
            raise ModelError(f"{name} config: model.{key} is required")
    for key in _INT_KEYS:
        value = model.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelError(f"{name} config: model.{key} must be an integer, got {value!r}")
        if value < (1 if key in _POSITIVE_KEYS else 0):
            raise ModelError(f"{name} config: model.{key} must be positive, got {value}")
    if int(model.get("dim_head") or 2) % 2:
        raise ModelError(f"{name} config: model.dim_head must be even (rotary pairs)")
    if model.get("stft_window_fn") is not None:
        raise ModelError(f"{name} config: a custom stft_window_fn is not supported (hann only)")


def _get(model: Mapping[str, Any], key: str, default: Any) -> Any:
    value = model.get(key, default)
    return default if value is None else value


def _trunk_and_stft(
    model: Mapping[str, Any], mask_depth_default: int
) -> tuple[TrunkConfig, StftConfig]:
    trunk = TrunkConfig(
        dim=int(model["dim"]),
        depth=int(model["depth"]),
        stereo=bool(_get(model, "stereo", False)),
        num_stems=int(_get(model, "num_stems", 1)),
        time_transformer_depth=int(_get(model, "time_transformer_depth", 2)),
        freq_transformer_depth=int(_get(model, "freq_transformer_depth", 2)),
        linear_transformer_depth=int(_get(model, "linear_transformer_depth", 0)),
        heads=int(_get(model, "heads", 8)),
        dim_head=int(_get(model, "dim_head", 64)),
        mask_estimator_depth=int(_get(model, "mask_estimator_depth", mask_depth_default)),
        mlp_expansion_factor=int(_get(model, "mlp_expansion_factor", 4)),
        zero_dc=bool(_get(model, "zero_dc", True)),
        skip_connection=bool(_get(model, "skip_connection", False)),
        use_pope=bool(_get(model, "use_pope", False)),
    )
    stft = StftConfig(
        n_fft=int(_get(model, "stft_n_fft", 2048)),
        hop_length=int(_get(model, "stft_hop_length", 512)),
        win_length=int(_get(model, "stft_win_length", 2048)),
        normalized=bool(_get(model, "stft_normalized", False)),
    )
    if stft.win_length > stft.n_fft:
        raise ModelError(
            f"stft_win_length {stft.win_length} exceeds stft_n_fft {stft.n_fft}; fix the config"
        )
    return trunk, stft


def _experimental(model: Mapping[str, Any], trunk: TrunkConfig, name: str) -> TrunkConfig:
    """The trunk of an experimental RoFormer (no DC zeroing, value residuals)."""
    streams = model.get("num_residual_streams", 1)
    if streams != 1:
        raise ModelError(
            f"{name} config: num_residual_streams {streams!r} (hyper-connections, from a "
            "library outside MSST) is not supported; only 1"
        )
    if trunk.linear_transformer_depth:
        raise ModelError(f"{name} config: linear_transformer_depth must be 0 (as MSST's code)")
    return replace(
        trunk,
        zero_dc=False,
        value_residuals=True,
        value_residual_learning=bool(_get(model, "use_value_residual_learning", False)),
    )


def bs_roformer_config(model: Mapping[str, Any], experimental: bool = False) -> BSRoformerConfig:
    """Read MSST's `model` section for `BSRoformer` (its defaults where keys are absent);
    `experimental`: for MSST's `bs_roformer_experimental`."""
    name = "bs_roformer_experimental" if experimental else "bs_roformer"
    keys = (_BS_KEYS - _NOT_EXPERIMENTAL) | _EXPERIMENTAL_KEYS if experimental else _BS_KEYS
    _check_model_section(model, keys, name)
    trunk, stft = _trunk_and_stft(model, mask_depth_default=2)
    if experimental:
        trunk = _experimental(model, trunk, name)
    freqs = _freqs_per_bands(model, stft, name)
    return BSRoformerConfig(trunk=trunk, stft=stft, freqs_per_bands=freqs)


def _freqs_per_bands(model: Mapping[str, Any], stft: StftConfig, name: str) -> tuple[int, ...]:
    freqs = model.get("freqs_per_bands", DEFAULT_FREQS_PER_BANDS)
    if not isinstance(freqs, (list, tuple)) or not all(
        isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in freqs
    ):
        raise ModelError(f"{name} config: freqs_per_bands must be positive integers, got {freqs!r}")
    freqs = tuple(freqs)
    if len(freqs) < 2:
        raise ModelError(f"{name} config: freqs_per_bands needs at least two bands")
    if sum(freqs) != stft.num_bins:
        raise ModelError(
            f"{name} config: freqs_per_bands sums to {sum(freqs)} but stft_n_fft "
            f"{stft.n_fft} gives {stft.num_bins} bins; they must match"
        )
    return freqs


def mel_band_roformer_config(
    model: Mapping[str, Any], experimental: bool = False
) -> MelBandRoformerConfig:
    """Read MSST's `model` section for `MelBandRoformer` (its defaults where absent);
    `experimental`: for MSST's `mel_band_roformer_experimental`."""
    name = "mel_band_roformer_experimental" if experimental else "mel_band_roformer"
    keys = (_MEL_KEYS - _NOT_EXPERIMENTAL) | _EXPERIMENTAL_KEYS if experimental else _MEL_KEYS
    _check_model_section(model, keys, name)
    trunk, stft = _trunk_and_stft(model, mask_depth_default=1)
    if experimental:
        trunk = _experimental(model, trunk, name)
    return _mel(model, trunk, stft)


def _mel(model: Mapping[str, Any], trunk: TrunkConfig, stft: StftConfig) -> MelBandRoformerConfig:
    return MelBandRoformerConfig(
        trunk=trunk,
        stft=stft,
        num_bands=int(_get(model, "num_bands", 60)),
        sample_rate=int(_get(model, "sample_rate", 44100)),
    )


def _conformer(
    model: Mapping[str, Any], roformer_keys: frozenset[str], name: str, mask_depth_default: int
) -> tuple[TrunkConfig, StftConfig, ConformerConfig]:
    """The trunk (its transformer depths read from the `*_conformer_depth` keys), STFT
    and conformer block of a conformer's `model` section."""
    keys = (roformer_keys - _NOT_CONFORMER) | set(_CONFORMER_DEPTHS) | _CONFORMER_BLOCK_KEYS
    _check_model_section(model, keys, name)
    renamed = {_CONFORMER_DEPTHS.get(key, key): value for key, value in model.items()}
    trunk, stft = _trunk_and_stft(renamed, mask_depth_default)
    block = ConformerConfig(
        ff_mult=int(_get(model, "ff_mult", 4)),
        conv_expansion_factor=int(_get(model, "conv_expansion_factor", 2)),
        conv_kernel_size=int(_get(model, "conv_kernel_size", 31)),
    )
    if block.conv_kernel_size % 2 == 0:
        raise ModelError(
            f"{name} config: model.conv_kernel_size must be odd, got {block.conv_kernel_size}"
        )
    return trunk, stft, block


def bs_conformer_config(model: Mapping[str, Any]) -> tuple[BSRoformerConfig, ConformerConfig]:
    """Read MSST's `model` section for `BSConformer` (its defaults where keys are absent):
    BS-RoFormer's bands and trunk shape, conformer blocks in place of transformers."""
    trunk, stft, block = _conformer(model, _BS_KEYS, "bs_conformer", mask_depth_default=2)
    freqs = _freqs_per_bands(model, stft, "bs_conformer")
    return BSRoformerConfig(trunk=trunk, stft=stft, freqs_per_bands=freqs), block


def mel_band_conformer_config(
    model: Mapping[str, Any],
) -> tuple[MelBandRoformerConfig, ConformerConfig]:
    """Read MSST's `model` section for `MelBandConformer` (its defaults where absent)."""
    trunk, stft, block = _conformer(model, _MEL_KEYS, "mel_band_conformer", mask_depth_default=1)
    return _mel(model, trunk, stft), block
