"""Conv-TasNet as in Demucs v2 (the `tasnet` / `tasnet_extra` checkpoints).

Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for
Speech Separation" (2019), as adapted by Demucs v2 (`demucs/tasnet.py`, 2.0.3) to
several stereo sources: a learned encoder (Conv1d, stride L/2, ReLU), a temporal
convolutional network that predicts one mask per source, and a linear decoder whose
frames are overlap-added. The module and parameter names follow Demucs v2 so its plain
state_dicts load strictly:

    encoder.conv1d_U                       Conv1d(audio_channels, N, L), no bias
    separator.network.0                    channel-wise LayerNorm (gamma, beta)
    separator.network.1                    bottleneck Conv1d(N, B, 1)
    separator.network.2.<r>.<x>.net        temporal block: 1x1 conv, PReLU, norm, and
                                           .3.net: depthwise dilated conv, PReLU, norm,
                                           pointwise conv (a parameter-free trim when causal)
    separator.network.3                    mask Conv1d(B, sources * N, 1)
    decoder.basis_signals                  Linear(N, audio_channels * L), no bias

Shapes: `M` batch, `S` sources, `N` filters, `K` encoder frames, `T` samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe

EPS = 1e-8
NORM_TYPES = ("gLN", "cLN", "BN", "id")
MASK_NONLINEARS = ("relu", "softmax")
DEFAULT_SOURCES = ("drums", "bass", "other", "vocals")
DEFAULT_SAMPLERATE = 44100
DEFAULT_SEGMENT_LENGTH = 44100 * 2 * 4  # Demucs v2's constructor default: 8 s


@dataclass(frozen=True)
class ConvTasNetConfig:
    """Demucs v2's ConvTasNet constructor arguments, under their upstream names.

    The defaults are the constructor's (X=8); the pretrained `tasnet` models use X=10.
    """

    sources: tuple[str, ...]
    N: int = 256  # encoder filters
    L: int = 20  # filter length in samples (encoder stride L // 2)
    B: int = 256  # bottleneck channels
    H: int = 512  # channels inside a temporal block
    P: int = 3  # depthwise kernel size
    X: int = 8  # blocks per repeat (dilations 1, 2, ..., 2**(X-1))
    R: int = 4  # repeats
    audio_channels: int = 2
    norm_type: str = "gLN"
    causal: bool = False
    mask_nonlinear: str = "relu"
    samplerate: int = DEFAULT_SAMPLERATE
    segment_length: int = DEFAULT_SEGMENT_LENGTH

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ConvTasNetConfig:
        """Validate constructor kwargs (as in a Demucs v2 checkpoint's args)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ModelError(
                f"unknown Conv-TasNet arguments {unknown}: expected some of {sorted(known)}"
            )
        if "sources" not in kwargs:
            raise ModelError("Conv-TasNet arguments lack 'sources': give the list of stem names")
        sources = kwargs["sources"]
        if (
            isinstance(sources, str)
            or not all(isinstance(s, str) and s for s in sources)
            or not sources
            or len(set(sources)) != len(sources)
        ):
            raise ModelError(f"Conv-TasNet 'sources' must be distinct stem names, got {sources!r}")
        config = cls(**{**kwargs, "sources": tuple(sources)})
        config._check()
        return config

    def _check(self) -> None:
        for name in ("N", "L", "B", "H", "P", "X", "R", "audio_channels", "samplerate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(
                    f"Conv-TasNet argument {name} must be a positive int, got {value!r}"
                )
        if self.L < 2:
            raise ModelError(f"Conv-TasNet filter length L must be at least 2, got {self.L}")
        if not isinstance(self.segment_length, int) or self.segment_length < self.L:
            raise ModelError(
                f"Conv-TasNet segment_length must be an int >= L={self.L}, got {self.segment_length!r}"
            )
        if self.norm_type not in NORM_TYPES:
            raise ModelError(f"Conv-TasNet norm_type {self.norm_type!r}: use one of {NORM_TYPES}")
        if self.mask_nonlinear not in MASK_NONLINEARS:
            raise ModelError(
                f"Conv-TasNet mask_nonlinear {self.mask_nonlinear!r}: use one of {MASK_NONLINEARS}"
            )
        if not isinstance(self.causal, bool):
            raise ModelError(f"Conv-TasNet 'causal' must be a bool, got {self.causal!r}")
        if not self.causal and self.P % 2 == 0:
            # Upstream pads (P - 1) * dilation // 2 on both sides: the length changes and
            # the residual addition fails for an even kernel.
            raise ModelError(f"Conv-TasNet kernel size P must be odd when not causal, got {self.P}")

    def to_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs under Demucs v2's names (sources as a list)."""
        kwargs = asdict(self)
        kwargs["sources"] = list(self.sources)
        return kwargs


class GlobalLayerNorm(nn.Module):
    """gLN: one mean and variance over channels and time per item; affine per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, C, K] -> [M, C, K]."""
        mean = x.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True).mean(dim=2, keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + EPS) + self.beta


class ChannelwiseLayerNorm(nn.Module):
    """cLN: mean and (biased) variance over channels, separately at each frame."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, C, K] -> [M, C, K]."""
        mean = x.mean(dim=1, keepdim=True)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        return self.gamma * (x - mean) / torch.sqrt(var + EPS) + self.beta


def make_norm(norm_type: str, channels: int) -> nn.Module:
    """The normalisation layer Demucs v2's `chose_norm` builds for `norm_type`."""
    if norm_type == "gLN":
        return GlobalLayerNorm(channels)
    if norm_type == "cLN":
        return ChannelwiseLayerNorm(channels)
    if norm_type == "id":
        return nn.Identity()
    return nn.BatchNorm1d(channels)


class TrimRight(nn.Module):
    """Drops the last `size` frames: a causal convolution's look-ahead (upstream Chomp1d)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : -self.size] if self.size else x


class DepthwiseSeparableConv(nn.Module):
    """Dilated depthwise conv, PReLU, norm, then pointwise conv H -> B."""

    def __init__(self, config: ConvTasNetConfig, dilation: int) -> None:
        super().__init__()
        hidden, kernel = config.H, config.P
        padding = (kernel - 1) * dilation
        if not config.causal:
            padding //= 2
        layers: list[nn.Module] = [
            nn.Conv1d(
                hidden,
                hidden,
                kernel,
                padding=padding,
                dilation=dilation,
                groups=hidden,
                bias=False,
            )
        ]
        if config.causal:
            layers.append(TrimRight(padding))
        layers += [
            nn.PReLU(),
            make_norm(config.norm_type, hidden),
            nn.Conv1d(hidden, config.B, 1, bias=False),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, H, K] -> [M, B, K]."""
        return self.net(x)


class TemporalBlock(nn.Module):
    """Residual block: 1x1 conv B -> H, PReLU, norm, depthwise-separable conv H -> B."""

    def __init__(self, config: ConvTasNetConfig, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(config.B, config.H, 1, bias=False),
            nn.PReLU(),
            make_norm(config.norm_type, config.H),
            DepthwiseSeparableConv(config, dilation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[M, B, K] -> [M, B, K] (no activation after the sum, as upstream)."""
        return x + self.net(x)


class MaskNetwork(nn.Module):
    """The temporal convolutional network: encoder frames to one mask per source."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.num_sources = len(config.sources)
        self.mask_nonlinear = config.mask_nonlinear
        repeats = [
            nn.Sequential(*[TemporalBlock(config, 2**x) for x in range(config.X)])
            for _ in range(config.R)
        ]
        self.network = nn.Sequential(
            ChannelwiseLayerNorm(config.N),
            nn.Conv1d(config.N, config.B, 1, bias=False),
            nn.Sequential(*repeats),
            nn.Conv1d(config.B, self.num_sources * config.N, 1, bias=False),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[M, N, K] -> masks [M, S, N, K]."""
        batch, filters, length = frames.shape
        score = self.network(frames).view(batch, self.num_sources, filters, length)
        if self.mask_nonlinear == "softmax":
            return F.softmax(score, dim=1)
        return F.relu(score)


class Encoder(nn.Module):
    """Non-negative encoder frames: ReLU(Conv1d(audio_channels -> N, L, stride L // 2))."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.conv1d_U = nn.Conv1d(
            config.audio_channels, config.N, config.L, stride=config.L // 2, bias=False
        )

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """[M, C, T] -> [M, N, K] with K = (T - L) // (L // 2) + 1."""
        return F.relu(self.conv1d_U(mix))


def overlap_and_add(frames: torch.Tensor, step: int) -> torch.Tensor:
    """[..., K, L] frames hopped by `step` -> [..., (K - 1) * step + L] summed signal."""
    *outer, count, length = frames.shape
    total = (count - 1) * step + length
    columns = frames.reshape(-1, count, length).transpose(1, 2)  # [X, L, K]
    signal = F.fold(columns, output_size=(1, total), kernel_size=(1, length), stride=(1, step))
    return signal.reshape(*outer, total)


class Decoder(nn.Module):
    """Masked frames to waveforms: a linear basis per frame, then overlap-add."""

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.audio_channels = config.audio_channels
        self.filter_length = config.L
        self.basis_signals = nn.Linear(config.N, config.audio_channels * config.L, bias=False)

    def forward(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """frames [M, N, K], masks [M, S, N, K] -> [M, S, C, (K - 1) * (L // 2) + L]."""
        masked = (frames.unsqueeze(1) * masks).transpose(2, 3)  # [M, S, K, N]
        basis = self.basis_signals(masked)  # [M, S, K, C * L]
        batch, sources, count, _ = basis.shape
        basis = basis.view(batch, sources, count, self.audio_channels, self.filter_length)
        return overlap_and_add(basis.transpose(2, 3), self.filter_length // 2)


class ConvTasNet(nn.Module):
    """Demucs v2's multi-source, multi-channel Conv-TasNet with the stemsplit protocol."""

    residual = None

    def __init__(self, config: ConvTasNetConfig) -> None:
        super().__init__()
        self.config = config
        self.sources = list(config.sources)
        self.samplerate = config.samplerate
        self.audio_channels = config.audio_channels
        self.segment_length = config.segment_length
        # Demucs v2 separate: apply_model(split=True, overlap=0.25) over chunks of
        # segment_length, triangle weights, the track normalised by its mono mix.
        self.recipe = Recipe(
            segment_samples=config.segment_length,
            overlap=0.25,
            window="triangle",
            padding="context",
            normalization="track-mean-std",
            batch_size=1,
        )
        self.encoder = Encoder(config)
        self.separator = MaskNetwork(config)
        self.decoder = Decoder(config)
        for parameter in self.parameters():
            if parameter.dim() > 1:  # upstream's init, for randomly built models
                nn.init.xavier_normal_(parameter)

    def valid_length(self, length: int) -> int:
        """Demucs v2 feeds chunks as they are (identity); at least one encoder frame."""
        return max(length, self.config.L)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix [M, C, T] -> stems [M, S, C, T].

        Samples past the last whole encoder frame come out as zeros, as upstream.
        """
        length = mix.shape[-1]
        if length < self.config.L:
            raise ValueError(f"Conv-TasNet needs at least L={self.config.L} samples, got {length}")
        frames = self.encoder(mix)
        stems = self.decoder(frames, self.separator(frames))
        return F.pad(stems, (0, length - stems.shape[-1]))


def build_conv_tasnet(kwargs: dict[str, Any]) -> ConvTasNet:
    """A randomly initialised model from Demucs v2 constructor kwargs (ModelError if bad)."""
    return ConvTasNet(ConvTasNetConfig.from_kwargs(kwargs))


def build_conv_tasnet_state(
    state: dict[str, Any], config: Any = None, **card: Any
) -> ConvTasNet:
    """The registry's factory: demucs v2's args.json as `config`, else shapes inferred.

    `card` may fix `sources` and `samplerate` (a zoo card knows them; the weights don't).
    """
    if isinstance(config, dict) and "model" in config and "audio" in config:
        raise ModelError(
            "this is a Conv-TasNet state_dict but its config is an MSST yaml; pass the config published "
            "with this checkpoint (demucs v2's args.json), or none"
        )
    if isinstance(config, dict):
        return build_conv_tasnet({**config, **card})
    return build_conv_tasnet(infer_conv_tasnet_args(state, **card))


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


# --- Libri2Mix speech separation (torchaudio's CONVTASNET_BASE_LIBRI2MIX layout) ------
# The original Conv-TasNet (Luo & Mesgarani): biases everywhere, GroupNorm(1) as gLN,
# residual and skip paths, sigmoid masks, a ConvTranspose1d decoder; mono, 8 kHz.

LIBRIMIX_DEFAULTS = {  # torchaudio's conv_tasnet_base
    "num_sources": 2,
    "enc_kernel_size": 16,
    "enc_num_feats": 512,
    "msk_kernel_size": 3,
    "msk_num_feats": 128,
    "msk_num_hidden_feats": 512,
    "msk_num_layers": 8,
    "msk_num_stacks": 3,
}


class SkipBlock(nn.Module):
    """1x1 conv, PReLU, gLN, dilated depthwise conv, PReLU, gLN; residual and skip 1x1."""

    def __init__(self, channels: int, hidden: int, kernel: int, dilation: int, last: bool):
        super().__init__()
        padding = (kernel - 1) * dilation // 2
        self.conv_layers = nn.Sequential(
            nn.Conv1d(channels, hidden, 1),
            nn.PReLU(),
            nn.GroupNorm(1, hidden, eps=EPS),
            nn.Conv1d(hidden, hidden, kernel, padding=padding, dilation=dilation, groups=hidden),
            nn.PReLU(),
            nn.GroupNorm(1, hidden, eps=EPS),
        )
        self.res_out = None if last else nn.Conv1d(hidden, channels, 1)  # the last has none
        self.skip_out = nn.Conv1d(hidden, channels, 1)


class SkipMaskNetwork(nn.Module):
    """gLN, bottleneck, R x X skip blocks summed into sigmoid masks."""

    def __init__(self, args: dict[str, int]) -> None:
        super().__init__()
        feats, channels = args["enc_num_feats"], args["msk_num_feats"]
        self.num_sources = args["num_sources"]
        self.input_norm = nn.GroupNorm(1, feats, eps=EPS)
        self.input_conv = nn.Conv1d(feats, channels, 1)
        layers, stacks = args["msk_num_layers"], args["msk_num_stacks"]
        self.conv_layers = nn.ModuleList(
            SkipBlock(
                channels,
                args["msk_num_hidden_feats"],
                args["msk_kernel_size"],
                2**layer,
                last=(stack, layer) == (stacks - 1, layers - 1),
            )
            for stack in range(stacks)
            for layer in range(layers)
        )
        self.output_prelu = nn.PReLU()
        self.output_conv = nn.Conv1d(channels, feats * self.num_sources, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[M, N, K] -> masks [M, S, N, K]."""
        features = self.input_conv(self.input_norm(frames))
        skips = torch.zeros_like(features)
        for block in cast("Iterable[SkipBlock]", self.conv_layers):
            hidden = block.conv_layers(features)
            if block.res_out is not None:
                features = features + block.res_out(hidden)
            skips = skips + block.skip_out(hidden)
        masks = torch.sigmoid(self.output_conv(self.output_prelu(skips)))
        return masks.view(frames.shape[0], self.num_sources, frames.shape[1], -1)


class LibriMixConvTasNet(nn.Module):
    """Two-speaker Conv-TasNet as torchaudio's Libri2Mix bundle, with the stemsplit protocol.

    No upstream chunking recipe exists (torchaudio separates whole utterances); we use
    10 s chunks with Demucs-style triangle cross-fades and no normalisation.
    """

    residual = None
    audio_channels = 1

    def __init__(self, args: dict[str, int], samplerate: int = 8000) -> None:
        super().__init__()
        self.args = dict(args)
        self.samplerate = samplerate
        self.sources = [f"speaker{i + 1}" for i in range(args["num_sources"])]
        self.stride = args["enc_kernel_size"] // 2
        self.recipe = Recipe(
            segment_samples=10 * samplerate,
            overlap=0.25,
            window="triangle",
            padding="context",
            normalization="none",
            batch_size=1,
        )
        kernel, feats = args["enc_kernel_size"], args["enc_num_feats"]
        self.encoder = nn.Conv1d(1, feats, kernel, self.stride, padding=self.stride, bias=False)
        self.mask_generator = SkipMaskNetwork(args)
        self.decoder = nn.ConvTranspose1d(
            feats, 1, kernel, self.stride, padding=self.stride, bias=False
        )

    def valid_length(self, length: int) -> int:
        """Any length: forward pads to whole strides itself."""
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix [M, 1, T] -> stems [M, S, 1, T]."""
        if mix.dim() != 3 or mix.shape[1] != 1:
            raise ValueError(f"expected a mono batch [M, 1, T], got {tuple(mix.shape)}")
        length = mix.shape[-1]
        # Zero-pad so the last frame ends on a whole stride (half a filter for even L).
        odd = self.args["enc_kernel_size"] % 2
        extra = (length - odd) % self.stride
        padded = F.pad(mix, (0, self.stride - extra if extra else 0))
        frames = self.encoder(padded)  # [M, N, K]
        masked = self.mask_generator(frames) * frames.unsqueeze(1)  # [M, S, N, K]
        batch, sources = masked.shape[:2]
        decoded = self.decoder(masked.flatten(0, 1))  # [M * S, 1, T']
        return decoded.view(batch, sources, 1, -1)[..., :length]


def build_librimix_conv_tasnet(
    kwargs: dict[str, Any], samplerate: int = 8000
) -> LibriMixConvTasNet:
    """A random model from torchaudio's ConvTasNet kwargs (defaults: conv_tasnet_base)."""
    unknown = sorted(set(kwargs) - set(LIBRIMIX_DEFAULTS))
    if unknown:
        raise ModelError(f"unknown Libri2Mix Conv-TasNet arguments {unknown}")
    args = {**LIBRIMIX_DEFAULTS, **kwargs}
    for name, value in args.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"Libri2Mix Conv-TasNet {name} must be a positive int, got {value!r}")
    if args["enc_kernel_size"] < 2 or args["msk_kernel_size"] % 2 == 0:
        raise ModelError(
            "Libri2Mix Conv-TasNet needs enc_kernel_size >= 2 and an odd msk_kernel_size"
        )
    return LibriMixConvTasNet(args, samplerate)


def infer_librimix_conv_tasnet_args(
    state_dict: dict[str, Any], msk_num_layers: int = 8
) -> dict[str, int]:
    """torchaudio ConvTasNet kwargs from a state_dict's shapes (checked key by key).

    Dilations leave no trace in the shapes, so blocks per stack (X) cannot be read:
    it is given (8 in every torchaudio bundle) and the stacks are counted from it.
    """
    feats, _, kernel = _shape(state_dict, "encoder.weight")
    prefix = "mask_generator.conv_layers."
    num_blocks = 1 + max(
        (int(k[len(prefix) :].split(".")[0]) for k in state_dict if k.startswith(prefix)),
        default=-1,
    )
    outputs = _shape(state_dict, "mask_generator.output_conv.weight")[0]
    if num_blocks == 0 or num_blocks % msk_num_layers or outputs % feats:
        raise ModelError(
            f"not a torchaudio Conv-TasNet state_dict: {num_blocks} blocks (not a multiple of "
            f"{msk_num_layers}) or a mask conv of {outputs} channels for N={feats}"
        )
    args = {
        "num_sources": outputs // feats,
        "enc_kernel_size": kernel,
        "enc_num_feats": feats,
        "msk_kernel_size": _shape(state_dict, prefix + "0.conv_layers.3.weight")[-1],
        "msk_num_feats": _shape(state_dict, "mask_generator.input_conv.weight")[0],
        "msk_num_hidden_feats": _shape(state_dict, prefix + "0.conv_layers.0.weight")[0],
        "msk_num_layers": msk_num_layers,
        "msk_num_stacks": num_blocks // msk_num_layers,
    }
    _compare_layout(
        lambda: build_librimix_conv_tasnet(args), state_dict, "torchaudio Libri2Mix Conv-TasNet"
    )
    return args
