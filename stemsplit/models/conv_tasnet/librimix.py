"""Conv-TasNet for speech, in torchaudio's CONVTASNET_BASE_LIBRI2MIX layout.

The original Conv-TasNet (Luo & Mesgarani): biases everywhere, GroupNorm(1) as gLN,
residual and skip paths, sigmoid masks, a ConvTranspose1d decoder; mono, 8 kHz.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe
from stemsplit.models.conv_tasnet.network import EPS
from stemsplit.models.conv_tasnet.shapes import _compare_layout, _shape

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
