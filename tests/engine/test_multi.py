"""TrackBatcher: several tracks' model calls pooled into forward passes give each track
exactly its one-track stems, passes never exceed the batch size nor stack chunks of
different lengths, and an error reaches every track of its pass."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from toy_models import PositionalToy

from stemsplit.engine.multi import TrackBatcher
from stemsplit.engine.runner import ModelRunner, separate_stream
from stemsplit.engine.source import ArraySource
from stemsplit.models.base import Recipe
from stemsplit.options import EngineSettings

RATE = 1000


class _Bundle:
    """What `TrackBatcher.for_models` reads of a loaded model: its networks."""

    def __init__(self, *members: PositionalToy) -> None:
        self.members = list(members)


class Recording:
    """A real runner that remembers the batch shape of each pass."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.shapes: list[tuple[int, ...]] = []
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.shapes.append(batch.shape)
        return self.runner(batch)


def _tracks(count: int, seed: int) -> list[np.ndarray]:
    """Noise tracks: half short (one or two chunks), half up to seven segments long."""
    rng = np.random.default_rng(seed)
    lengths = [int(rng.integers(30, 120 if i % 2 else 700)) for i in range(count)]
    return [rng.standard_normal((2, n)).astype(np.float32) for n in lengths]


def _stems(model, audio: np.ndarray, settings: EngineSettings, runner) -> np.ndarray:
    source = ArraySource(audio, RATE)
    return np.concatenate(list(separate_stream(model, source, settings, runner)), axis=-1)


def _pooled(model, tracks, settings, runner) -> tuple[list, TrackBatcher]:
    """Every track in its own thread, all in flight together, calls pooled."""
    batcher = TrackBatcher.for_models([_Bundle(model)], settings, {id(model): runner})
    assert batcher is not None

    started = threading.Barrier(len(tracks))

    def one(audio: np.ndarray) -> np.ndarray:
        with batcher.track():
            started.wait()  # every track in flight before the first call
            return _stems(model, audio, settings, batcher.runners[id(model)])

    with ThreadPoolExecutor(len(tracks)) as pool:
        futures = [pool.submit(one, audio) for audio in tracks]
        _drive(batcher, futures)
        return [future.result() for future in futures], batcher


def _drive(batcher: TrackBatcher, futures: list) -> None:
    """The driver: this thread runs the passes until every track is done."""
    while not all(future.done() for future in futures):
        batcher.serve(timeout=0.05)


@pytest.mark.parametrize("recipe, pad_to, shifts", [
    # fixed input length; shifts delay the track by up to 500 samples (0.5 s)
    (Recipe(1000, 0.25, "triangle", "context", "none", 3), 1000, 2),
    (Recipe(100, 0.25, "triangle", "context", "none", 3), None, 0),  # length follows chunk
    (Recipe(120, 0.5, "fade", "reflect-border", "none", 3), None, 0),  # fades per batch
    (Recipe(80, 0.5, "uniform", "zeros", "none", 4), None, 0),
])  # fmt: skip
def test_pooled_tracks_equal_one_track_runs(recipe: Recipe, pad_to: int | None,
                                            shifts: int) -> None:  # fmt: skip
    model = PositionalToy(RATE, recipe, pad_to)
    settings = EngineSettings(device="cpu", batch_size=recipe.batch_size, shifts=shifts, seed=5)
    runner = ModelRunner(model, "cpu")
    tracks = _tracks(12, seed=recipe.segment_samples)
    alone = [_stems(model, audio, settings, runner) for audio in tracks]
    recording = Recording(runner)
    pooled, batcher = _pooled(model, tracks, settings, recording)
    for mine, reference in zip(pooled, alone):
        assert mine.shape == reference.shape
        np.testing.assert_array_equal(mine, reference)
    assert max(shape[0] for shape in recording.shapes) <= recipe.batch_size
    assert batcher.shared_passes > 0  # chunks of several tracks did share passes
    assert batcher.passes == len(recording.shapes)


def test_tta_passes_hold_three_rows_per_chunk() -> None:
    recipe = Recipe(120, 0.5, "fade", "reflect-border", "none", 2)
    model = PositionalToy(RATE, recipe)
    settings = EngineSettings(device="cpu", batch_size=2, tta=True)
    runner = ModelRunner(model, "cpu")
    tracks = _tracks(6, seed=1)
    alone = [_stems(model, audio, settings, runner) for audio in tracks]
    recording = Recording(runner)
    pooled, batcher = _pooled(model, tracks, settings, recording)
    for mine, reference in zip(pooled, alone):
        np.testing.assert_array_equal(mine, reference)
    assert batcher.capacity == 6
    assert max(shape[0] for shape in recording.shapes) <= 6


def test_no_pooling_where_it_cannot_apply() -> None:
    model = PositionalToy(RATE, Recipe(100, 0.25, "triangle", "context", "none", 1))
    runners = {id(model): ModelRunner(model, "cpu")}
    assert TrackBatcher.for_models([_Bundle(model)], EngineSettings(device="cpu"), runners) is None
    one = EngineSettings(device="cpu", batch_size=1)
    assert TrackBatcher.for_models([_Bundle(model)], one, runners) is None
    config_batch = PositionalToy(RATE, Recipe(100, 0.25, "triangle", "context", "none", 4))
    own = {id(config_batch): ModelRunner(config_batch, "cpu")}  # only --batch-size pools
    assert TrackBatcher.for_models([_Bundle(config_batch)], EngineSettings(device="cpu"),
                                   own) is None  # fmt: skip
    four = EngineSettings(device="cpu", batch_size=4)
    assert TrackBatcher.for_models([_Bundle(model)], four, runners) is not None
    int8 = EngineSettings(device="cpu", batch_size=4, precision="int8")
    assert TrackBatcher.for_models([_Bundle(model)], int8, runners) is None


def test_a_failed_pass_fails_each_of_its_tracks_and_stop_ends_the_rest() -> None:
    model = PositionalToy(RATE, Recipe(100, 0.25, "triangle", "context", "none", 4), 100)
    settings = EngineSettings(device="cpu", batch_size=4)

    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("out of memory")

    batcher = TrackBatcher.for_models([_Bundle(model)], settings, {id(model): broken})
    assert batcher is not None
    call = batcher.runners[id(model)]
    errors: list[str] = []

    together = threading.Barrier(3)

    def track() -> None:
        with batcher.track():
            together.wait()  # all three in flight before the first call
            try:
                call(np.zeros((1, 2, 100), np.float32))
            except RuntimeError as err:
                errors.append(str(err))

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(track) for _ in range(3)]
        _drive(batcher, futures)
    assert errors == ["out of memory"] * 3
    assert batcher.passes == 1  # the three calls shared one pass, which failed

    def late_call() -> np.ndarray:
        with batcher.track():
            return call(np.zeros((1, 2, 100), np.float32))

    batcher.admit()  # another track in flight: the call waits for it, no pass is due
    with ThreadPoolExecutor(1) as pool:  # a call waiting when the run stops raises
        waiting = pool.submit(late_call)
        while not batcher._waiting:
            time.sleep(0.01)
        batcher.stop(KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            waiting.result(timeout=30)
    with pytest.raises(KeyboardInterrupt):  # and so does any later call
        late_call()
    assert batcher.passes == 1


def _rows_batcher(capacity: int, passes: list[int]) -> TrackBatcher:
    """A batcher over a row-wise network (x -> 2x + 1) that records each pass's rows."""
    model = PositionalToy(RATE, Recipe(100, 0.25, "triangle", "context", "none", capacity))

    def network(batch: np.ndarray) -> np.ndarray:
        passes.append(batch.shape[0])
        return 2 * batch + 1

    settings = EngineSettings(device="cpu", batch_size=capacity)
    batcher = TrackBatcher.for_models([_Bundle(model)], settings, {id(model): network})
    assert batcher is not None
    batcher.key = id(model)  # type: ignore[attr-defined]
    return batcher


def _rows(first: int, count: int) -> np.ndarray:
    return np.arange(first, first + count, dtype=np.float32)[:, None, None] * np.ones((1, 2, 8))


def test_a_pass_fills_up_with_part_of_the_next_call() -> None:
    """A call of 2 rows queued before another track's call of 6 (batch 6): the pass takes
    the 2 and 4 of the 6, the next pass the last 2; each call gets its own rows back."""
    passes: list[int] = []
    batcher = _rows_batcher(6, passes)
    call = batcher.runners[batcher.key]  # type: ignore[attr-defined]
    batcher.admit()
    batcher.admit()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call, _rows(0, 2))
        while batcher._waiting < 1:  # the 2 rows are queued first
            time.sleep(0.001)
        second = pool.submit(call, _rows(100, 6))
        while batcher._waiting < 2:
            time.sleep(0.001)
        while not (first.done() and second.done()):
            batcher.serve(timeout=0.05)
    np.testing.assert_array_equal(first.result(), 2 * _rows(0, 2) + 1)
    np.testing.assert_array_equal(second.result(), 2 * _rows(100, 6) + 1)
    assert passes == [6, 2] and batcher.shared_passes == 1


def test_a_partial_pass_waits_for_the_track_admitted_in_a_finished_ones_room() -> None:
    """Tracks A and B fill the room in flight (batch 4: 8 rows); A waits on a 2-row call
    while B ends without one. The loop admits C in B's room before A's partial pass
    runs, so C's first call shares it (it used to run A's 2 rows alone at B's end)."""
    from types import SimpleNamespace

    from stemsplit.batch.pooled import run_pooled
    from stemsplit.options import TrackResult

    passes: list[int] = []
    batcher = _rows_batcher(4, passes)
    call = batcher.runners[batcher.key]  # type: ignore[attr-defined]
    length = next(n for n in range(100, 2000, 10) if batcher.rows({RATE: n}) == 4)
    prepared = SimpleNamespace(sources={RATE: SimpleNamespace(length=length)})
    got: dict[int, np.ndarray] = {}

    def run_one(position: int, take) -> TrackResult:
        take()
        if position == 1:  # B: no model call; it ends once A's call waits
            while batcher._waiting < 1:
                time.sleep(0.001)
            time.sleep(0.05)
        else:
            got[position] = call(_rows(10 * position, 2 if position == 0 else 3))
        return TrackResult(Path(f"t{position}.wav"), "done")

    results = run_pooled(batcher, 3, lambda position: prepared, run_one)
    assert [r.status for r in results] == ["done"] * 3
    assert passes == [4, 1] and batcher.shared_passes == 1  # A's 2 + 2 of C's 3, then 1
    np.testing.assert_array_equal(got[0], 2 * _rows(0, 2) + 1)
    np.testing.assert_array_equal(got[2], 2 * _rows(20, 3) + 1)
