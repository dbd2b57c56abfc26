"""The Demucs layers' fast paths (channel-last tokens, fused norm + GLU) against demucs.

Random models hide errors in DConv: its LayerScale starts at 1e-3, so a wrong branch
changes a whole model's output by less than the parity tolerance. Here every
parameter, LayerScale included, is drawn at O(1) and the layers are compared alone.
"""

from __future__ import annotations

import pytest
import torch

from stemsplit.models.demucs.hybrid_layers import HDecLayer, HEncLayer
from stemsplit.models.demucs.layers import DConv, token_conv

pytest.importorskip("demucs")
from demucs.demucs import DConv as RefDConv
from demucs.hdemucs import HDecLayer as RefHDecLayer
from demucs.hdemucs import HEncLayer as RefHEncLayer

# Rerun with oneDNN and ATen capped at AVX2 by the README's test command (cpu_paths).
pytestmark = pytest.mark.cpu_paths

TOLERANCE = 1e-4


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """O(1) weights everywhere (norm affines and LayerScales included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            scale = 0.5 if param.dim() == 1 else 1 / param[0].numel() ** 0.5
            param.copy_(torch.randn(param.shape, generator=generator) * scale)


def _pair(reference: torch.nn.Module, ours: torch.nn.Module, seed: int = 0):
    _randomize(reference, seed)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert expected.abs().max() > 0.1
    error = (actual - expected).abs().max().item()
    assert error <= TOLERANCE * max(1.0, expected.abs().max().item()), f"max abs error {error:.3g}"


@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_token_conv_matches_conv1d(kernel: int, dilation: int) -> None:
    torch.manual_seed(kernel * 10 + dilation)
    conv = torch.nn.Conv1d(6, 5, kernel, dilation=dilation, padding=dilation * (kernel // 2))
    x = torch.randn(3, 6, 40)
    with torch.no_grad():
        expected = conv(x)
        actual = token_conv(x.transpose(1, 2).contiguous(), conv).transpose(1, 2)
    _close(actual, expected)


def test_token_conv_rejects_strided() -> None:
    with pytest.raises(ValueError):
        token_conv(torch.zeros(1, 8, 4), torch.nn.Conv1d(4, 4, 3, stride=2, padding=1))


@pytest.mark.parametrize(
    ("channels", "kwargs", "length"),
    [
        (48, {"compress": 8, "depth": 2}, 300),
        (16, {"compress": 4, "depth": 2, "norm": False}, 77),
        (12, {"compress": 4, "depth": -2}, 5),  # no dilation; rows shorter than the taps
        (8, {"compress": 2, "depth": 1, "gelu": False}, 64),
    ],
)
def test_dconv_matches_demucs(channels: int, kwargs: dict, length: int) -> None:
    reference, ours = _pair(RefDConv(channels, **kwargs), DConv(channels, **kwargs))
    x = torch.randn(4, channels, length) * 2 + 0.5
    with torch.no_grad():
        _close(ours(x), reference(x))
        tokens = ours.forward_tokens(x.transpose(1, 2).contiguous())
        _close(tokens.transpose(1, 2), reference(x))


@pytest.mark.parametrize("freq", [True, False])
@pytest.mark.parametrize("norm", [False, True])
def test_encoder_layer_matches_demucs(freq: bool, norm: bool) -> None:
    dconv_kw = {"compress": 4, "depth": 2, "init": 1e-3}
    kw = {"freq": freq, "norm": norm, "norm_groups": 4, "dconv_kw": dconv_kw}
    reference, ours = _pair(RefHEncLayer(4, 16, **kw), HEncLayer(4, 16, **kw), seed=1)
    shape = (2, 4, 64, 20) if freq else (2, 4, 203)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = reference(x)
        _close(ours(x), expected)
        if freq:  # the model feeds channels-last spectrograms
            _close(ours(x.contiguous(memory_format=torch.channels_last)), expected)


@pytest.mark.parametrize("freq", [True, False])
@pytest.mark.parametrize("last", [False, True])
def test_decoder_layer_matches_demucs(freq: bool, last: bool) -> None:
    dconv_kw = {"compress": 4, "depth": 2, "init": 1e-3}
    kw = {"freq": freq, "last": last, "norm": False, "dconv_kw": dconv_kw}
    reference, ours = _pair(RefHDecLayer(16, 8, **kw), HDecLayer(16, 8, **kw), seed=2)
    shape = (2, 16, 16, 20) if freq else (2, 16, 51)
    x, skip = torch.randn(shape), torch.randn(shape)
    length = 200
    with torch.no_grad():
        expected, expected_pre = reference(x, skip, length)
        actual, pre = ours(x.contiguous(memory_format=torch.channels_last) if freq else x,
                           skip, length)  # fmt: skip
    _close(actual, expected)
    _close(pre, expected_pre)


def test_fused_norm_is_exact_for_offset_inputs() -> None:
    """GroupNorm stats from Gram matrices (float64) stay exact for inputs far from zero."""
    reference, ours = _pair(RefDConv(32, compress=4, depth=1), DConv(32, compress=4, depth=1))
    with torch.no_grad():
        for model in (reference, ours):  # the wide 1x1 conv's output: mean >> std
            model.layers[0][3].bias.add_(50.0)
        x = torch.randn(2, 32, 100)
        _close(ours(x), reference(x))


TRANSFORMER = {"dim": 64, "hidden_scale": 4.0, "num_heads": 4, "num_layers": 3,
               "norm_in": True, "norm_first": True, "norm_out": True, "layer_scale": True,
               "gelu": True, "emb": "sin"}  # fmt: skip


def _transformers(group_norm: int):
    from demucs.transformer import CrossTransformerEncoder as RefTransformer

    from stemsplit.models.demucs.transformer import CrossTransformerEncoder

    torch.manual_seed(0)
    reference = RefTransformer(**TRANSFORMER, group_norm=group_norm).eval()
    ours = CrossTransformerEncoder(**TRANSFORMER, group_norm=group_norm)
    return _pair(reference, ours)


@pytest.mark.parametrize("group_norm", [0, 1])
def test_fused_transformer_matches_demucs(group_norm: int) -> None:
    """The oneDNN path (LayerScale folded into the projections, residual add and GELU
    fused into the matmuls) with every LayerScale at O(1), so a wrong fold shows."""
    reference, ours = _transformers(group_norm)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 64, 4, 20, generator=generator)
    xt = torch.randn(1, 64, 50, generator=generator)
    with torch.no_grad():
        expected = reference(x, xt)
        actual = ours(x, xt)
    for a, e in zip(actual, expected):
        _close(a, e)


def test_bf16_transformer_close_to_fp32() -> None:
    """Under CPU bf16 autocast the streams run in bf16 end to end: same shapes and
    dtype out, within bf16's accuracy (SNR >= 30 dB) of the fp32 path."""
    _, ours = _transformers(1)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(1, 64, 4, 20, generator=generator)
    xt = torch.randn(1, 64, 50, generator=generator)
    with torch.inference_mode():
        expected = ours(x, xt)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = ours(x, xt)
    for a, e in zip(actual, expected):
        assert a.dtype == torch.float32 and a.shape == e.shape
        snr = 10 * torch.log10(e.pow(2).sum() / (a - e).pow(2).sum())
        assert snr >= 30, f"bf16 SNR {snr:.1f} dB"
