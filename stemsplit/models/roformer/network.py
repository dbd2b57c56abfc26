"""The RoFormer network both architectures share: STFT, band split, axial transformers,
mask estimation, inverse STFT. Subclasses choose the bands (contiguous or mel).

Spectrogram layout (as MSST): frequency-major with the stereo channels interleaved
per bin and real/imaginary innermost, i.e. one frame's features are
`(bin, channel, re/im)` flattened; a band is a run of whole bins.

Axis legend: b batch, s stems, c audio channels, t samples, f STFT bins,
n STFT frames, k bands, d model dim.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from stemsplit.models.base import ModelInfo
from stemsplit.models.ops import cpu_bf16_autocast
from stemsplit.models.roformer.config import StftConfig, TrunkConfig
from stemsplit.models.roformer.layers import (
    BandSplit,
    MaskEstimator,
    RMSNorm,
    RotaryEmbedding,
    Transformer,
)
from stemsplit.models.roformer.polar import PolarEmbedding


class RoformerNetwork(nn.Module):
    """Band-split RoFormer trunk; `forward(mix [b, c, t]) -> [b, s, c, t]`.

    `bins_per_band` counts the STFT bins of each band. Mel-Band RoFormer has a norm
    at the end of every transformer and none after the trunk; BS-RoFormer the
    reverse (`per_transformer_norm`). `mask_layers` is the Linear count per band MLP.
    """

    window: torch.Tensor  # buffer (register_buffer below)
    # Under CPU bf16 autocast, run band split to masks in bf16 (every layer casts its
    # weights to its input's dtype); subclasses with other layers may opt out.
    bf16_trunk: bool = True

    def __init__(
        self,
        trunk: TrunkConfig,
        stft: StftConfig,
        bins_per_band: tuple[int, ...],
        info: ModelInfo,
        *,
        per_transformer_norm: bool,
        mask_layers: int,
    ) -> None:
        super().__init__()
        self.trunk_config = trunk
        self.stft_config = stft
        info.attach(self)
        self.audio_channels = trunk.audio_channels
        self.skip_connection = trunk.skip_connection
        self.zero_dc = trunk.zero_dc

        # MSST's `use_pope`: PoPE positions in place of rotary ones (polar.py).
        def position() -> RotaryEmbedding | PolarEmbedding:
            if trunk.use_pope:
                return PolarEmbedding(trunk.dim_head, trunk.heads)
            return RotaryEmbedding(trunk.dim_head)

        time_rotary, freq_rotary = position(), position()

        def transformer(
            depth: int, rotary: RotaryEmbedding | PolarEmbedding | None, mix: bool = False
        ) -> Transformer:
            return Transformer(
                trunk.dim, depth, trunk.heads, trunk.dim_head, rotary, per_transformer_norm, mix
            )

        self.value_residuals = trunk.value_residuals
        self.layers = nn.ModuleList()
        for index in range(trunk.depth):
            # Experimental RoFormers with value-residual learning: every block after
            # the first mixes the first block's values into its attentions.
            mix = trunk.value_residual_learning and index > 0
            block = nn.ModuleList()
            if trunk.linear_transformer_depth > 0:
                block.append(transformer(trunk.linear_transformer_depth, None))
            block.append(transformer(trunk.time_transformer_depth, time_rotary, mix))
            block.append(transformer(trunk.freq_transformer_depth, freq_rotary, mix))
            self.layers.append(block)
        self.final_norm = None if per_transformer_norm else RMSNorm(trunk.dim)

        band_inputs = tuple(2 * bins * trunk.audio_channels for bins in bins_per_band)
        self.band_split = BandSplit(trunk.dim, band_inputs)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(trunk.dim, band_inputs, mask_layers, trunk.mlp_expansion_factor)
            for _ in range(trunk.num_stems)
        )
        self.register_buffer("window", torch.hann_window(stft.win_length), persistent=False)

    def valid_length(self, length: int) -> int:
        """Any length works: the STFT pads by reflection and istft crops to `length`."""
        return length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: [b, c, t] -> stems [b, s, c, t]."""
        batch, channels, length = mix.shape
        if channels != self.audio_channels:
            raise ValueError(f"expected {self.audio_channels} audio channels, got {channels}")
        stft = self.stft_config
        spec = torch.stft(
            mix.reshape(batch * channels, length),
            n_fft=stft.n_fft,
            hop_length=stft.hop_length,
            win_length=stft.win_length,
            window=self.window,
            normalized=stft.normalized,
            return_complex=True,
        )
        num_bins, num_frames = spec.shape[-2:]
        spec = spec.view(batch, channels, num_bins, num_frames)

        features = torch.view_as_real(spec).permute(0, 3, 2, 1, 4)  # [b, n, f, c, 2]
        features = self._select_bins(features).reshape(batch, num_frames, -1)
        if self.bf16_trunk and cpu_bf16_autocast(features):
            # Band split to mask estimators in bf16 with oneDNN's fused matmuls (weights
            # cast once, `ops.weight_like`); autocast alone casts around every op.
            with torch.autocast("cpu", enabled=False):
                masks = self._masks(features.to(torch.bfloat16)).float()
        else:
            masks = self._masks(features)
        masks = masks.view(batch, len(self.mask_estimators), num_frames, -1, channels, 2)
        masks = self._merge_masks(masks)  # [b, s, n, f, c, 2]
        masks = torch.view_as_complex(masks.permute(0, 1, 4, 3, 2, 5).contiguous())

        out = spec.unsqueeze(1) * masks  # [b, s, c, f, n]
        if self.zero_dc:
            out[:, :, :, 0] = 0
        audio = torch.istft(
            out.reshape(-1, num_bins, num_frames),
            n_fft=stft.n_fft,
            hop_length=stft.hop_length,
            win_length=stft.win_length,
            window=self.window,
            normalized=stft.normalized,
            length=length,
        )
        return audio.view(batch, -1, channels, length)

    def _masks(self, features: torch.Tensor) -> torch.Tensor:
        """features [b, n, band inputs] -> every stem's band masks [b, s, n, band inputs]."""
        x = self.band_split(features)  # [b, n, k, d]
        x = self._transform(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return torch.stack([estimator(x) for estimator in self.mask_estimators], dim=1)

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """Axial attention: x [b, n, k, d] through every block (time, then bands)."""
        batch, num_frames, num_bands, dim = x.shape
        outputs: list[torch.Tensor] = []
        # Experimental RoFormers: the first block's time / band values, passed to the
        # later blocks (which then run without residuals: Transformer.forward_values).
        time_values: torch.Tensor | None = None
        freq_values: torch.Tensor | None = None
        for block in self.layers:
            transformers = cast("list[Transformer]", list(cast(nn.ModuleList, block)))
            if len(transformers) == 3:
                linear, time, freq = transformers
                x = linear(x.reshape(batch, num_frames * num_bands, dim))
                x = x.view(batch, num_frames, num_bands, dim)
            else:
                time, freq = transformers
            if self.skip_connection:
                # MSST sums the outputs of all previous blocks into the input.
                for previous in outputs:
                    x = x + previous
            if self.value_residuals:
                x = x.transpose(1, 2).reshape(batch * num_bands, num_frames, dim)
                x, values = time.forward_values(x, time_values)
                time_values = values if time_values is None else time_values
                x = x.view(batch, num_bands, num_frames, dim).transpose(1, 2)
                x = x.reshape(batch * num_frames, num_bands, dim)
                x, values = freq.forward_values(x, freq_values)
                freq_values = values if freq_values is None else freq_values
                x = x.view(batch, num_frames, num_bands, dim)
            else:
                x = x.contiguous()  # updated in place below: a tensor of this pass's own
                _along_axis(time, x, time_axis=True)
                _along_axis(freq, x, time_axis=False)
            if self.skip_connection:
                outputs.append(x)
        return x

    def _select_bins(self, features: torch.Tensor) -> torch.Tensor:
        """features [b, n, f, c, 2] -> the bins of each band in band order."""
        return features

    def _merge_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks [b, s, n, band bins, c, 2] -> one mask per STFT bin [b, s, n, f, c, 2]."""
        return masks


# Tokens per group of sequences in an axial pass (`_along_axis`): a group's largest
# activation (the feed-forward's 4x hidden, 32 MB in fp32) is reused from malloc's heap
# and mostly read back from cache. A whole axis at once made GB-sized temporaries that
# came back from the kernel as fresh pages every time (page faults cost more than the
# matmuls in bf16).
_GROUP_TOKENS = 4096


def _along_axis(transformer: nn.Module, x: torch.Tensor, time_axis: bool) -> None:
    """Run `transformer` over every sequence of x [b, n, k, d], in place: along the
    frames of each band (`time_axis`) or along the bands of each frame, a group of
    sequences at a time (sequences are independent, so any grouping gives the same
    result)."""
    length = x.shape[1] if time_axis else x.shape[2]
    count = x.shape[2] if time_axis else x.shape[1]
    group = max(1, _GROUP_TOKENS // length)
    for item in x:  # [n, k, d]
        for start in range(0, count, group):
            part = (
                item[:, start : start + group].transpose(0, 1)
                if time_axis
                else item[start : start + group]
            )
            part.copy_(transformer(part.contiguous()))
