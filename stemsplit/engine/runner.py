"""Run a model over a track, chunk by chunk, and stream out its stems.

One pass = plan the chunks (chunking.py), read each with its padding from a
`TrackSource`, run them through the network in batches on the chosen device and
precision, overlap-add, and yield finished samples as soon as no later chunk can
touch them. Shifts (Demucs) are several passes over shifted views, averaged; TTA
(MSST) is applied per chunk (channel swap and polarity inversion), which equals
MSST's whole-track TTA because the windows are the same for every variant.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import numpy as np

from stemsplit.audio.blocks import align, skip
from stemsplit.capability import cpu, device_native
from stemsplit.engine.chunking import Chunk, OverlapAdd, Plan, batch_windows, plan_chunks
from stemsplit.engine.kernel_cache import best_ms, choose_kernels
from stemsplit.engine.source import TrackSource
from stemsplit.errors import UsageError
from stemsplit.models.base import Recipe, SeparationModel
from stemsplit.models.ops import int8_matmuls
from stemsplit.options import PRECISIONS, EngineSettings

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

def resolve_device(name: str) -> str:
    """`auto` picks cuda, then mps, then cpu; an unavailable device is a usage error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UsageError("--device mps: MPS is not available (use --device cpu)")
    if not (name == "cpu" or name == "mps" or name.startswith("cuda")):
        raise UsageError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return name


class ModelRunner:
    """Calls the network on batches of chunks: device moves, autocast, no grad."""

    def __init__(self, model: SeparationModel, device: str = "cpu", precision: str = "fp32"
                 ) -> None:  # fmt: skip
        import torch

        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.model = model
        self.device = torch.device(resolve_device(device))
        if precision == "auto":
            precision, reason = choose_precision(self.device.type, probe_precision(self.device))
            log.info("--precision auto: %s (%s)", precision, reason)
        if precision == "int8" and self.device.type != "cpu":
            raise UsageError(f"--precision int8 runs on the CPU only (--device {device}): "
                             "use bf16 or fp16 on a GPU")
        self.precision = precision
        if self.device.type == "cpu":
            _say_cpu_once()
            choose_kernels()
        if self.device.type == "cpu" and not cpu().native(precision):
            log.warning(
                "--precision %s: this CPU has no native %s support (AVX512-BF16/AMX), so it "
                "runs through plain torch ops, far slower than fp32; use --precision fp32 "
                "on this machine", precision, precision,
            )
        cast("torch.nn.Module", model).to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """[batch, channels, time] float32 -> [batch, stems, channels, time] float32."""
        import torch

        x = torch.from_numpy(batch).to(self.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.inference_mode():
            if self.precision == "int8":
                with int8_matmuls():
                    y = self.model(x)
            elif dtype is None:
                y = self.model(x)
            else:
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    y = self.model(x)
        return y.float().cpu().numpy()


@functools.cache
def _say_cpu_once() -> None:
    """`-v` names what the CPU runs natively, once a run: the paths every model takes."""
    log.info("this CPU: %s", cpu().describe())


# bf16 must beat fp32 by this much on the probe's matmul for `auto` to pick it: a CPU
# that runs bf16 natively but barely faster gains less than bf16 costs in accuracy.
MIN_BF16_SPEEDUP = 1.3


@dataclass(frozen=True)
class PrecisionProbe:
    """What `--precision auto` decides from: does the device run bf16 natively, and
    how much faster than fp32 a transformer-sized matmul ran (None: not measured)."""

    native_bf16: bool
    bf16_speedup: float | None = None


def choose_precision(device_type: str, probe: PrecisionProbe) -> tuple[str, str]:
    """`--precision auto`: (precision, why). bf16 where the device runs it natively
    (and, on a CPU, measurably faster than fp32); fp32 everywhere else."""
    if device_type == "cuda":
        if probe.native_bf16:
            return "bf16", "this GPU runs bf16 natively"
        return "fp32", "this GPU has no native bf16"
    if device_type != "cpu":
        return "fp32", f"bf16 is not chosen automatically on {device_type}"
    if not probe.native_bf16:
        return "fp32", "this CPU has no native bf16 (no AVX512-BF16/AMX): it would be emulated"
    if probe.bf16_speedup is None:
        return "fp32", "this CPU runs bf16 natively but its speed was not measured"
    if probe.bf16_speedup < MIN_BF16_SPEEDUP:
        return "fp32", (
            f"this CPU runs bf16 natively but a matmul ran only {probe.bf16_speedup:.2f}x "
            f"faster than fp32 (< {MIN_BF16_SPEEDUP}x)"
        )
    return "bf16", (
        f"this CPU runs bf16 natively and a matmul ran {probe.bf16_speedup:.2f}x faster "
        "than fp32"
    )


def probe_precision(device: str | torch.device) -> PrecisionProbe:
    """Ask torch whether `device` runs bf16 natively; on a CPU that does, time a
    [256, 512] x [512, 2048] matmul (HTDemucs' feed-forward width) in both dtypes."""
    import torch

    device = torch.device(device)
    if device.type != "cpu":
        return PrecisionProbe(native_bf16=device_native(device.type, "bf16"))
    return _probe_cpu()


@functools.lru_cache(maxsize=1)
def _probe_cpu() -> PrecisionProbe:
    import torch

    if not cpu().native_bf16:
        return PrecisionProbe(native_bf16=False)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 512, generator=generator)
    w = torch.randn(2048, 512, generator=generator)

    x16, w16 = x.bfloat16(), w.bfloat16()
    linear = torch.nn.functional.linear
    with torch.inference_mode():
        fp32 = best_ms(lambda: linear(x, w), repeats=4)
        bf16 = best_ms(lambda: linear(x16, w16), repeats=4)
    return PrecisionProbe(native_bf16=True, bf16_speedup=fp32 / max(bf16, 1e-9))


def effective_recipe(model: SeparationModel, settings: EngineSettings) -> tuple[Recipe, int]:
    """The model's recipe with the user's overrides, and the segment in samples."""
    recipe: Recipe = model.recipe
    if settings.overlap is not None:
        recipe = replace(recipe, overlap=settings.overlap)
    if settings.batch_size is not None:
        recipe = replace(recipe, batch_size=settings.batch_size)
    segment = recipe.segment_samples
    if settings.segment_seconds is not None:
        segment = int(settings.segment_seconds * model.samplerate)
        try:
            model.valid_length(segment)
        except ValueError as err:
            raise UsageError(f"--segment {settings.segment_seconds}: {err}") from err
    return recipe, segment


def _read_chunk(source: TrackSource, plan: Plan, chunk: Chunk) -> np.ndarray:
    """The model input for `chunk`, padded as the recipe says."""
    if plan.padding == "context":
        return source.read(chunk.read_start, chunk.read_stop)
    part = source.read_reflect_padded(chunk.start, chunk.start + chunk.length, plan.border)
    missing = plan.segment - chunk.length
    if missing > 0:
        # MSST: reflect when more than half a chunk is real audio, else zeros.
        if chunk.length > plan.segment // 2:
            part = np.pad(part, ((0, 0), (0, missing)), mode="reflect")
        else:
            part = np.pad(part, ((0, 0), (0, missing)), mode="constant")
    return part


def _apply_tta(runner: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """MSST's TTA: average of the plain, channel-swapped and polarity-inverted runs."""
    n = batch.shape[0]
    out = runner(np.concatenate([batch, batch[:, ::-1].copy(), -batch], axis=0))
    plain, swapped, inverted = out[:n], out[n : 2 * n], out[2 * n :]
    return (plain + swapped[:, :, ::-1] - inverted) / np.float32(3)


def run_pass(
    runner: Callable[[np.ndarray], np.ndarray],
    model: SeparationModel,
    source: TrackSource,
    recipe: Recipe,
    segment: int,
    tta: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """One pass over `source`: yield [stems, channels, n] blocks covering it in order."""
    plan = plan_chunks(source.length, recipe, segment, model.valid_length)
    num_stems = len(model.sources)
    ola = OverlapAdd(num_stems, source.channels, plan.padded_length)
    chunks = list(plan.chunks)
    emitted = 0  # in padded coordinates
    index = 0
    while index < len(chunks):
        batch = [chunks[index]]
        first_input = _read_chunk(source, plan, chunks[index])
        inputs = [first_input]
        index += 1
        while len(batch) < recipe.batch_size and index < len(chunks):
            candidate = _read_chunk(source, plan, chunks[index])
            if candidate.shape != first_input.shape:
                break
            batch.append(chunks[index])
            inputs.append(candidate)
            index += 1
        stacked = np.stack(inputs)
        outputs = _apply_tta(runner, stacked) if tta else runner(stacked)
        for chunk, output, window in zip(batch, outputs, batch_windows(plan, batch)):
            contribution = output[..., chunk.trim : chunk.trim + chunk.length]
            ola.add(chunk.start, contribution, window)
        if on_chunk:
            on_chunk(index, len(chunks))
        ready = chunks[index].start if index < len(chunks) else plan.padded_length
        block = ola.release(ready)
        emitted, block = _crop_border(block, emitted, plan, source.length)
        if block.shape[-1]:
            yield block


def _crop_border(block: np.ndarray, emitted: int, plan: Plan, length: int
                 ) -> tuple[int, np.ndarray]:  # fmt: skip
    """Keep the part of a released block inside [border, border + length)."""
    start, stop = emitted, emitted + block.shape[-1]
    lo, hi = max(start, plan.border), min(stop, plan.border + length)
    kept = block[..., lo - start : hi - start] if hi > lo else block[..., :0]
    return stop, kept


class _ShiftedSource(TrackSource):
    """The track delayed by `delay` samples (zeros before), as demucs' shifted chunk."""

    def __init__(self, source: TrackSource, delay: int) -> None:
        super().__init__(source.channels, source.length + delay, source.samplerate)
        self.inner = source
        self.delay = delay

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.inner.read(start - self.delay, stop - self.delay)


def separate_stream(
    model: SeparationModel,
    source: TrackSource,
    settings: EngineSettings,
    runner: Callable[[np.ndarray], np.ndarray] | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Iterator[np.ndarray]:
    """All passes of one model over `source` ([stems, channels, n] blocks, in order).

    With `shifts`, demucs' `apply_model` pads the track by half a second on both
    sides and averages passes started at random offsets in [0, 0.5 s]; the offsets
    come from a `random.Random(seed)` so runs are reproducible.
    """
    recipe, segment = effective_recipe(model, settings)
    runner = runner or ModelRunner(model, settings.device, settings.precision)
    if settings.shifts <= 0:
        yield from run_pass(runner, model, source, recipe, segment, settings.tta, on_chunk)
        return
    max_shift = int(0.5 * model.samplerate)
    rng = random.Random(settings.seed)
    streams = []
    for _ in range(settings.shifts):
        offset = rng.randint(0, max_shift)
        delay = max_shift - offset
        shifted = _ShiftedSource(source, delay)
        passes = run_pass(runner, model, shifted, recipe, segment, settings.tta, on_chunk)
        streams.append(skip(passes, delay))
    for blocks in align(streams):
        yield sum(blocks[1:], blocks[0]) / np.float32(settings.shifts)
