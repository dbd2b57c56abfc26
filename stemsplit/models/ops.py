"""Matmuls that every architecture shares: `F.linear` through oneDNN on CPU.

torch sends fp32 CPU matmuls to MKL's sgemm, which runs at less than half oneDNN's
speed on AMD CPUs (2.2-2.5x measured on an AVX-512 EPYC, docs/performance.md); oneDNN
also fuses the exact GELU or a residual add into the matmul. Same numbers as
`F.linear` within float rounding.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast, overload

import torch
import torch.nn.functional as F
from torch import nn

from stemsplit.capability import cpu
from stemsplit.models import kernels


def tracing() -> bool:
    """Whether an exporter or compiler (ONNX, OpenVINO, torch.compile) is tracing."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """CPU matmuls go to oneDNN: torch sends fp32 ones to MKL's sgemm, which runs at
    less than half oneDNN's speed on AMD CPUs; bf16 ones gain the fused GELU/add, where
    the CPU runs bf16 natively (elsewhere oneDNN has no bf16 kernel and refuses).
    Under autocast F.linear is used, as autocast must see the call."""
    if x.device.type != "cpu" or weight.dtype != x.dtype or tracing():
        return False  # exporters and compilers see plain torch ops
    caps = cpu()
    return (
        caps.onednn_linear
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and caps.native_bf16))
        and not torch.is_autocast_enabled("cpu")
    )


def cpu_bf16_autocast(x: torch.Tensor) -> bool:
    """Whether `x` meets CPU bf16 autocast: the cue for a network's own bf16 path."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


# Copies derived from parameters (bf16 casts, int8 packs), by key, with the versions of
# the parameters they came from: made once, not per call (a bf16 cast per call cost 0.4 s
# per RoFormer chunk), kept until a parameter changes in place (as `load_state_dict`
# does; a write through `.data` is not seen) or the owning parameter is freed.
_DERIVED: dict[tuple[Any, ...], tuple[tuple[int, ...], Any]] = {}


def _derived(key: tuple[Any, ...], owner: torch.nn.Parameter,
             sources: Sequence[torch.nn.Parameter], make: Callable[[], Any]) -> Any:  # fmt: skip
    """The copy `make()` builds from `sources`, cached under `key` while `owner` lives."""
    version = tuple(source._version for source in sources)
    cached = _DERIVED.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    if cached is None:
        weakref.finalize(owner, _DERIVED.pop, key, None)
    value = make()
    _DERIVED[key] = (version, value)
    return value


def fold_row_scale(weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """`weight * scale[:, None]` and `bias * scale`: a per-channel scale (LayerScale)
    folded into the linear before it. Made once per parameter version and kept as
    parameters, so their bf16 casts and int8 packs are made once too (packing the
    folds per call cost 7 % of an int8 HTDemucs segment)."""
    sources = (weight, bias, scale)
    if (tracing() or torch.is_grad_enabled()
            or not all(isinstance(t, nn.Parameter) for t in sources)):  # fmt: skip
        return weight * scale[:, None], bias * scale

    def make() -> tuple[nn.Parameter, nn.Parameter]:
        with torch.inference_mode(False), torch.no_grad():  # kept across inference calls
            return (nn.Parameter(weight * scale[:, None], requires_grad=False),
                    nn.Parameter(bias * scale, requires_grad=False))  # fmt: skip

    key = ("fold", id(weight), id(bias), id(scale))
    return _derived(key, cast(nn.Parameter, weight), cast("Sequence[nn.Parameter]", sources),
                    make)  # fmt: skip


@overload
def weight_like(tensor: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...
@overload
def weight_like(tensor: None, x: torch.Tensor) -> None: ...
def weight_like(tensor: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """`tensor` in `x`'s dtype: fp32 weights meet bf16 activations in the networks' bf16
    paths. Parameters are cast once (`_derived`)."""
    if tensor is None or tensor.dtype == x.dtype or not x.is_floating_point():
        return tensor
    if not isinstance(tensor, torch.nn.Parameter) or tracing():
        return tensor.to(x.dtype)  # a cast made while exporting is not a real tensor
    parameter, dtype = tensor, x.dtype
    return _derived(("cast", id(parameter), dtype), parameter, (parameter,),
                    lambda: parameter.detach().to(dtype))


# `--precision int8`: whether fp32 CPU matmuls with stored weights run as dynamic int8.
_INT8_MATMULS: ContextVar[bool] = ContextVar("int8_matmuls", default=False)


@contextmanager
def int8_matmuls() -> Iterator[None]:
    """Within it, matmuls and convolutions with fp32 weights run as dynamic int8 on CPU
    (`--precision int8`): weights quantized per output channel (once for a parameter),
    activations per call (per tensor, from their range), accumulated in int32, out in
    fp32 (FBGEMM; VNNI where the CPU has it). `fast_linear` checks the flag;
    `F.linear`, `F.conv1d` and `F.conv2d` calls (nn.Linear, nn.Conv*) are caught by a
    torch function mode. Layers under 64 products per output or with a spiky input
    (`_MAX_CREST`), norms, transposed convolutions and element-wise work stay fp32;
    attention runs in bf16 where the CPU has native bf16, else fp32."""
    token = _INT8_MATMULS.set(True)
    try:
        with _Int8Functions():
            yield
    finally:
        _INT8_MATMULS.reset(token)


def _stored(tensor: torch.Tensor | None) -> torch.nn.Parameter | None:
    """The parameter `tensor` is or views (a slice of a fused weight), else None."""
    if isinstance(tensor, torch.nn.Parameter):
        return tensor
    base = None if tensor is None else tensor._base
    return base if isinstance(base, torch.nn.Parameter) else None


def _pack_int8(weight: torch.Tensor, bias: torch.Tensor | None, conv: tuple[Any, ...]) -> Any:
    """`weight` quantized per output channel (symmetric, 8 bits) and prepacked with
    `bias`: for `quantized.linear_dynamic`, or with `conv` = (stride, padding, dilation,
    groups) for `quantized.conv{1,2}d_dynamic`."""
    tensor = weight.detach().float()
    scales = tensor.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
    shape = (-1,) + (1,) * (tensor.dim() - 1)
    # Rounded here, not by `torch.quantize_per_channel` (10x slower: 0.3 vs 2.9 ms a
    # 2048 x 512 weight, most of the first int8 call).
    values = torch.round(tensor / scales.view(shape)).to(torch.int8)
    zeros = torch.zeros(tensor.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # torch deprecates its quantized tensor dtypes (pytorch#184982) for torchao; 2.13
        # still runs FBGEMM's dynamic kernels, which is what this mode measures.
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch._make_per_channel_quantized_tensor(values, scales.double(), zeros, 0)
    bias = None if bias is None else bias.detach().float()
    if not conv:
        return torch.ops.quantized.linear_prepack(quantized, bias)
    prepack = {3: torch.ops.quantized.conv1d_prepack, 4: torch.ops.quantized.conv2d_prepack}
    return prepack[tensor.dim()](quantized, bias, *conv)


def _int8_weight(weight: torch.Tensor, bias: torch.Tensor | None,
                 conv: tuple[Any, ...] = ()) -> Any:  # fmt: skip
    """`weight` (and `bias`) packed for int8: a parameter (or a view of one) once, kept
    until it changes or is freed; a weight computed per call (a folded LayerScale)
    per call, which costs one pass over the weight against the matmul's many."""
    base, bias_base = _stored(weight), _stored(bias)
    if base is None or (bias is not None and bias_base is None):
        return _pack_int8(weight, bias, conv)
    key = ("int8", id(base), weight.storage_offset(), *weight.shape, *weight.stride(),
           id(bias_base), -1 if bias is None else bias.storage_offset(), conv)  # fmt: skip
    sources = (base,) if bias_base is None else (base, bias_base)
    return _derived(key, base, sources, lambda: _pack_int8(weight, bias, conv))


# Largest crest factor (peak / RMS) of an input quantized to 8 bits per tensor: the
# rounding then stays ~20 dB under the signal (20 log10(127 sqrt(12) / 40) = 21 dB).
# Spectrogram-side inputs of HTDemucs' outer layers reach 50-80 and stay fp32; with them
# in int8 a segment fell from 27 to 19 dB to fp32 (docs/performance.md).
_MAX_CREST = 40.0


# Fewest products per output for int8 to pay: below it the matmul is bound by writing
# its fp32 output, and quantizing the input costs more than int8 saves (172032 tokens
# x 48 -> 48: fp32 5.3 ms, int8 6.4 ms; x 9 -> 48: 1.9 vs 3.6 ms; 96 -> 120: 4.7 vs 3.5).
_MIN_FAN_IN = 64


def _int8_input(x: torch.Tensor, weight: torch.Tensor) -> tuple[float, int] | None:
    """`x`'s 8-bit scale and zero point (FBGEMM's choice: the range with 0 in it over
    255 steps, 127 without VNNI), or None where int8 does not apply: outside
    `int8_matmuls()`, a small fan-in, or a crest factor over `_MAX_CREST`."""
    if not (_INT8_MATMULS.get() and x.dtype == weight.dtype == torch.float32
            and x.device.type == "cpu" and not tracing()
            and weight[0].numel() >= _MIN_FAN_IN):  # fmt: skip
        return None
    dense = _in_memory_order(x)
    low_t, high_t = torch.aminmax(dense)
    low, high = min(float(low_t), 0.0), max(float(high_t), 0.0)
    peak = max(-low, high)
    if peak * peak * x.numel() > _MAX_CREST**2 * float(torch.linalg.vector_norm(dense)) ** 2:
        return None
    steps = 127 if _reduce_range() else 255
    scale = (high - low) / steps or 1.0
    return scale, min(steps, round(-low / scale))


def _in_memory_order(x: torch.Tensor) -> torch.Tensor:
    """`x` with its axes in memory order (a view): a whole-tensor reduction then reads
    it straight through. `aminmax` copies a channels-last tensor first (10.5 ms against
    1.2 for a 48 x 512 x 336 spectrogram layer)."""
    strides = x.stride()
    return x.permute(sorted(range(x.dim()), key=lambda axis: -strides[axis]))


def _reduce_range() -> bool:
    """Without VNNI, FBGEMM's u8*s8 pairs add up in int16 and can saturate: 7-bit
    activations there, full 8-bit where VNNI sums in int32."""
    return not cpu().vnni


def _int8_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                 ) -> torch.Tensor | None:  # fmt: skip
    """`F.linear` as int8 inside `int8_matmuls()` (the input quantized with the scale
    `_int8_input` chose, so its range is read once); None where it does not apply."""
    quantization = _int8_input(x, weight)
    if quantization is None:
        return None
    packed = _int8_weight(weight, bias)
    run = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32
    return run(x, *quantization, packed)


def _int8_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
               ) -> torch.Tensor | None:  # fmt: skip
    """`F.conv1d`/`F.conv2d` as dynamic int8; None where it does not apply (string
    padding, unbatched input)."""
    dims = weight.dim() - 2
    if isinstance(padding, str) or x.dim() != dims + 2 or _int8_input(x, weight) is None:
        return None

    def each(value: Any) -> tuple[int, ...]:
        return tuple(map(int, value)) if isinstance(value, (tuple, list)) else (int(value),) * dims

    packed = _int8_weight(weight, bias, (each(stride), each(padding), each(dilation), groups))
    run = torch.ops.quantized.conv1d_dynamic if dims == 1 else torch.ops.quantized.conv2d_dynamic
    # The op reads a channels-last input's range through two contiguous copies (min and
    # max): one copy here is cheaper (48 x 512 x 336: 43.6 -> 30.8 ms); same output.
    return run(x.contiguous(), packed, _reduce_range())


_INT8_FORMS: dict[Any, Any] = {F.linear: _int8_linear, F.conv1d: _int8_conv,
                               F.conv2d: _int8_conv}  # fmt: skip


class _Int8Functions(torch.overrides.TorchFunctionMode):
    """Sends `F.linear`, `F.conv1d` and `F.conv2d` to their int8 forms."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        int8 = _INT8_FORMS.get(func)
        if int8 is not None:
            y = int8(*args, **kwargs)
            if y is not None:
                return y
        return func(*args, **kwargs)


def _onednn_matmul(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """oneDNN for this matmul: where it applies, and in fp32 where `kernels` chose it
    over MKL's sgemm (`F.linear`)."""
    return _use_onednn(x, weight) and (
        x.dtype != torch.float32 or kernels.current().linear == "onednn"
    )


def fast_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, gelu: bool = False
) -> torch.Tensor:
    """`F.linear` (then exact GELU with `gelu`), through oneDNN on CPU; the weights take
    `x`'s dtype."""
    y = _int8_linear(x, weight, bias)
    if y is not None:
        return torch.ops.aten.gelu_(y) if gelu else y  # in place: y is the op's fresh output
    weight, bias = weight_like(weight, x), weight_like(bias, x)
    if _onednn_matmul(x, weight):
        if gelu:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    y = F.linear(x, weight, bias)
    return F.gelu(y) if gelu else y


def fast_linear_add(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor
) -> torch.Tensor:
    """`residual + F.linear(x, weight, bias)`, the add fused into oneDNN's matmul on CPU."""
    y = _int8_linear(x, weight, bias)
    if y is not None:
        return y.add_(residual)
    weight, bias = weight_like(weight, x), weight_like(bias, x)
    if _onednn_matmul(x, weight) and residual.dtype == x.dtype:
        residual = residual.contiguous()
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, "add")
    return residual + F.linear(x, weight, bias)


# Query rows per block in `fast_attention`: a block's scores (rows x keys) stay near
# 2.8 MB, small enough to be read back from cache by the softmax and the second matmul:
# 700 k fp32 or 1.4 M bf16 scores, measured best on the AVX-512 EPYC for 1344 and 2688
# keys (bf16 at 700 k: +2 % an HTDemucs segment).
_SCORE_BLOCK_BYTES = 2_800_000
# The blocked path loops over heads in Python: worth it for a few long sequences only.
_MAX_LOOPED_HEADS = 64
_MIN_KEYS = 256


def _bf16_attention(query: torch.Tensor) -> bool:
    """`--precision int8` runs attention in bf16 where the CPU does so natively: it is
    the largest fp32 cost left in int8 mode (a third of an HTDemucs segment), and
    int8 attention was slower (docs/performance.md)."""
    return (_INT8_MATMULS.get() and query.dtype == torch.float32
            and query.device.type == "cpu" and cpu().native_bf16 and not tracing())  # fmt: skip


def fast_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`F.scaled_dot_product_attention(query, key, value)` (no mask, default scale),
    `[B, H, L, D]` in and out.

    On CPU (bf16, or fp32 where `kernels` chose it; outside autocast) the two matmuls go
    through oneDNN, a block of query rows at a time: for HTDemucs' 1344-2688-token
    sequences 1.5-1.6x torch's flash kernel in fp32 and ~2x in bf16, whose flash kernel
    is no faster than fp32 on an AVX512-BF16 CPU (docs/performance.md). Many short
    sequences (RoFormer) in bf16 go through grouped `bmm`s instead (~1.8x flash). The
    softmax is taken whole per row (accumulated in fp32 for bf16 scores), not online:
    the same maths within float rounding.
    """
    if _bf16_attention(query):
        return fast_attention(query.bfloat16(), key.bfloat16(), value.bfloat16()).float()
    flash_fp32 = query.dtype == torch.float32 and kernels.current().attention == "flash"
    if flash_fp32 or not (_use_onednn(query, key) and query.dim() == 4):
        return F.scaled_dot_product_attention(query, key, value)
    batch, heads, rows, depth = query.shape
    keys = key.shape[2]
    if batch * heads > _MAX_LOOPED_HEADS or keys < _MIN_KEYS:
        # Many short sequences (RoFormer's 62-801-token axes, batched by band or frame):
        # a Python loop per head costs more than flash's fused kernel (2-8x slower) in
        # fp32; in bf16, where flash runs no faster than fp32, batched matmuls win.
        if query.dtype == torch.bfloat16:
            return _attention_in_groups(query, key, value)
        return F.scaled_dot_product_attention(query, key, value)
    block = max(64, _SCORE_BLOCK_BYTES // (keys * query.element_size()))
    scaled = query * depth**-0.5
    out = query.new_empty(batch, heads, rows, value.shape[-1])
    linear = torch.ops.mkldnn._linear_pointwise
    for b in range(batch):
        for h in range(heads):
            key_h = key[b, h].contiguous()
            value_t = value[b, h].transpose(0, 1).contiguous()
            for start in range(0, rows, block):
                scores = linear(scaled[b, h, start : start + block], key_h, None, "none", [], "")
                weights = torch.softmax(scores, -1)  # bf16: accumulated in fp32 inside
                out[b, h, start : start + block] = linear(weights, value_t, None, "none", [], "")
    return out


def _attention_in_groups(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> torch.Tensor:
    """Attention for many sequences as `bmm`s over groups of them, each group's scores
    about `_SCORE_BLOCK_BYTES` (one 801-token head, or ~360 62-token ones) so they
    are read back from cache; the softmax accumulates in fp32.

    The score buffers are allocated once per call: fresh multi-MB tensors per group
    came from new zeroed pages every time and made this 3x slower.
    """
    *lead, rows, depth = query.shape
    keys = key.shape[-2]
    query = (query * depth**-0.5).reshape(-1, rows, depth)
    key = key.reshape(-1, keys, depth)
    value = value.reshape(-1, keys, value.shape[-1])
    out = query.new_empty(query.shape[0], rows, value.shape[-1])
    group = max(1, _SCORE_BLOCK_BYTES // (rows * keys * query.element_size()))
    scores = query.new_empty(min(group, query.shape[0]), rows, keys)
    weights = torch.empty_like(scores)
    # torch's bf16 softmax accumulates in fp32 and is the faster one on long rows
    # (801 keys: 0.16 vs 0.20 ms a head), but 4x slower on short ones (62 keys), where
    # the scores are converted to fp32 and back around an fp32 softmax instead.
    via_fp32 = keys < _MIN_KEYS
    if via_fp32:
        scores_fp32 = torch.empty_like(scores, dtype=torch.float32)
        weights_fp32 = torch.empty_like(scores_fp32)
    for start in range(0, query.shape[0], group):
        part = slice(start, start + group)
        size = min(group, query.shape[0] - start)
        torch.bmm(query[part], key[part].transpose(1, 2), out=scores[:size])
        if via_fp32:
            scores_fp32[:size].copy_(scores[:size])
            torch.ops.aten._softmax.out(scores_fp32[:size], -1, False, out=weights_fp32[:size])
            weights[:size].copy_(weights_fp32[:size])
        else:
            torch.ops.aten._softmax.out(scores[:size], -1, False, out=weights[:size])
        torch.bmm(weights[:size], value[part], out=out[part])
    return out.view(*lead, rows, value.shape[-1])


class LSTM(nn.LSTM):
    """`nn.LSTM` (same parameters, same state dict) that stays in fp32 under CPU bf16
    autocast where the CPU has no native bf16: autocast sends LSTMs to oneDNN's bf16
    kernel, which such CPUs lack (oneDNN refuses to build it)."""

    def forward(self, input, hx=None):
        if (
            input.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and not cpu().native_bf16
        ):
            with torch.autocast("cpu", enabled=False):
                if hx is not None:
                    hx = tuple(h.float() for h in hx)
                return super().forward(input.float(), hx)
        return super().forward(input, hx)
