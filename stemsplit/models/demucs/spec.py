"""STFT front end and ISTFT back end of the hybrid Demucs models (HDemucs, HTDemucs).

Bit-for-bit the transforms of demucs 4.1 (`spec.py` and the models' `_spec`/`_ispec`):
a normalised, centred Hann STFT with hop nfft // 4, after re-padding the signal so
that the spectrogram has exactly ceil(length / hop) frames, aligned with the time
branch whose convolutions all divide the length by their stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "constant") -> torch.Tensor:
    """F.pad on the last axis that also reflect-pads inputs shorter than the padding.

    Reflection needs more samples than the padding; when the input is too short,
    zeros are first added (on the right, then the left) as demucs' `pad1d` does.
    """
    length = x.shape[-1]
    if mode == "reflect":
        widest = max(left, right)
        if length <= widest:
            extra = widest - length + 1
            extra_right = min(right, extra)
            extra_left = extra - extra_right
            left, right = left - extra_left, right - extra_right
            x = F.pad(x, (extra_left, extra_right))
    return F.pad(x, (left, right), mode)


def stft(x: torch.Tensor, nfft: int, hop: int) -> torch.Tensor:
    """`x: [..., time]` -> complex `[..., nfft // 2 + 1, frames]` (normalised, centred)."""
    *other, length = x.shape
    z = torch.stft(
        x.reshape(-1, length),
        nfft,
        hop,
        window=torch.hann_window(nfft, dtype=x.dtype, device=x.device),
        win_length=nfft,
        normalized=True,
        center=True,
        return_complex=True,
        pad_mode="reflect",
    )
    return z.view(*other, z.shape[-2], z.shape[-1])


def istft(z: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """Inverse of `stft`: complex `[..., freqs, frames]` -> `[..., length]`."""
    *other, freqs, frames = z.shape
    nfft = 2 * freqs - 2
    x = torch.istft(
        z.reshape(-1, freqs, frames),
        nfft,
        hop,
        window=torch.hann_window(nfft, dtype=z.real.dtype, device=z.device),
        win_length=nfft,
        normalized=True,
        length=length,
        center=True,
    )
    return x.view(*other, x.shape[-1])


def hybrid_spec(x: torch.Tensor, nfft: int, hybrid: bool = True, old: bool = False) -> torch.Tensor:
    """Demucs' `_spec`: `[B, C, T]` -> complex `[B, C, nfft // 2, ceil(T / hop)]`.

    The signal is padded by 3/2 hop on the left (reflect; zeros for `old`, the MDX
    models' padding bug) and up to a whole number of hops plus 3/2 hop on the right;
    the two outer frames on each side are then dropped, as is the Nyquist bin.
    A non-hybrid model takes the plain STFT (Nyquist bin dropped only).
    """
    hop = nfft // 4
    if not hybrid:
        return stft(x, nfft, hop)[..., :-1, :]
    frames = math.ceil(x.shape[-1] / hop)
    pad = hop // 2 * 3
    x = pad1d(x, pad, pad + frames * hop - x.shape[-1], "constant" if old else "reflect")
    z = stft(x, nfft, hop)[..., :-1, :]
    return z[..., 2 : 2 + frames]


def hybrid_ispec(
    z: torch.Tensor, length: int, hybrid: bool = True, old: bool = False, padded: bool = False
) -> torch.Tensor:
    """Demucs' `_ispec`: complex `[..., nfft // 2, frames]` -> `[..., length]`.

    `padded`: `z` already has the zero Nyquist bin and the two zero frames on each
    side (`padded_cac_spec` writes it so), saving two copies of the spectrogram.
    """
    if padded:
        hop = (z.shape[-2] - 1) // 2
    else:
        hop = z.shape[-2] // 2  # nfft // 4, with nfft // 2 bins before the Nyquist pad
        z = F.pad(z, (0, 0, 0, 1))
    if not hybrid:
        return istft(z, hop, length)
    if not padded:
        z = F.pad(z, (2, 2))
    pad = hop // 2 * 3
    if old:
        return istft(z, hop, hop * math.ceil(length / hop))[..., :length]
    x = istft(z, hop, hop * math.ceil(length / hop) + 2 * pad)
    return x[..., pad : pad + length]


def complex_as_channels(z: torch.Tensor) -> torch.Tensor:
    """CaC input: complex `[B, C, F, T]` -> real `[B, 2C, F, T]` (re/im of a channel adjacent)."""
    batch, channels, freqs, frames = z.shape
    return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(batch, channels * 2, freqs, frames)


def channels_as_complex(m: torch.Tensor) -> torch.Tensor:
    """CaC output: real `[B, S, 2C, F, T]` -> complex `[B, S, C, F, T]`."""
    batch, sources, channels, freqs, frames = m.shape
    m = m.view(batch, sources, channels // 2, 2, freqs, frames).permute(0, 1, 2, 4, 5, 3)
    return torch.view_as_complex(m.contiguous())


def padded_cac_spec(
    x: torch.Tensor, num_sources: int, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """CaC output `[B, S * 2C, F, T]` (any layout) -> complex `[B, S, C, F + 1, T + 4]`.

    `x * scale + shift` (per-batch `[B, 1, 1, 1]`: the front end's normalisation
    undone) written straight into a zero spectrogram with hybrid_ispec's padding
    (a Nyquist bin, two frames each side): one pass instead of four copies.
    """
    batch, channels, freqs, frames = x.shape
    out = x.new_zeros(batch, num_sources, channels // (2 * num_sources), freqs + 1, frames + 4, 2)
    target = out[:, :, :, :freqs, 2 : frames + 2]
    source = x.unflatten(1, (num_sources, -1, 2)).permute(0, 1, 2, 4, 5, 3)
    torch.mul(source, scale.view(batch, 1, 1, 1, 1, 1), out=target)
    target.add_(shift.view(batch, 1, 1, 1, 1, 1))
    return torch.view_as_complex(out)
