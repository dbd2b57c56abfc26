"""The Ray executor: tracks go to a Ray cluster, each worker loading the model once.

Workers are Ray actors built from the same options as the local `Separator`; each
processes whole tracks (decode, separate, write) to the shared output path and
returns a `TrackResult`. Progress and the summary come back to the caller as
results arrive. Ray is optional: `pip install 'stemsplit-cli[ray]'`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stemsplit.batch.inputs import Track
from stemsplit.errors import StemsplitError, UsageError


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise UsageError(
            "--executor ray needs Ray: pip install 'stemsplit-cli[ray]' (or pip install ray)"
        ) from err
    return ray


class _Worker:
    """Body of the Ray actor: one Separator for all its tracks, from the same request
    as the local one (options are plain frozen dataclasses; models load in the worker)."""

    def __init__(self, request: dict[str, Any]) -> None:
        from stemsplit.plan import make_plan
        from stemsplit.separator import Separator

        models = request["models"]
        plan = make_plan(models, request["stems"], request["engine"], request["output"])
        self.separator = Separator(plan, model_dir=models.model_dir, offline=models.offline)

    def process(self, track: Track, skip_existing: bool) -> Any:
        from stemsplit.batch.run import run_batch

        return run_batch(self.separator, [track], skip_existing=skip_existing)[0]


def run_on_ray(
    request: dict[str, Any],
    tracks: Sequence[Track],
    address: str | None = None,
    workers: int = 2,
    skip_existing: bool = True,
    progress: Callable | None = None,
) -> list:
    """Separate `tracks` on Ray workers; results in the order of `tracks`."""
    ray = import_ray()
    from ray.util import ActorPool

    from stemsplit.options import Progress

    if workers < 1:
        raise UsageError("--ray-workers must be at least 1")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False)
    actor = ray.remote(num_cpus=1)(_Worker)
    actors = [actor.remote(request) for _ in range(workers)]
    order = {str(t.path): i for i, t in enumerate(tracks)}
    results: list = [None] * len(tracks)
    try:
        pending = ActorPool(actors).map_unordered(
            lambda worker, track: worker.process.remote(track, skip_existing), list(tracks)
        )
        for result in pending:
            index = order[str(result.input)]
            results[index] = result
            if progress:
                progress(Progress(index, len(tracks), result.input, 1.0, result.status))
    except ray.exceptions.RayError as err:
        raise _our_error(err, ray.exceptions.RayError) from err
    return results


def _our_error(err: BaseException, ray_error: type) -> StemsplitError:
    """The StemsplitError a worker raised (model load, clashes), else Ray's in one line.

    Ray wraps a task's exception in a class deriving from both RayTaskError and the
    original type; its `cause` is the original, with the plain message.
    """
    cause: BaseException | None = err
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, StemsplitError) and not isinstance(cause, ray_error):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    if last.startswith("stemsplit.errors."):  # an actor's constructor failed: our message
        return StemsplitError(last.split(": ", 1)[-1])
    return StemsplitError(f"Ray: {last}")
