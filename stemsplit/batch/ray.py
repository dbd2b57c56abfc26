"""The Ray executor: tracks go to Ray workers, each holding its models for all its tracks.

The driver plans once: every worker gets the driver's `RunPlan` (frozen; recipes,
`--keep`, engine and output settings in it) and the model files' checksums, never the
request, so nothing is planned twice. The driver also decides skip or redo
(`dispatch.triage`) before any worker starts. Workers are actors with
`--cpus-per-worker` CPUs and `--gpus-per-worker` GPUs (fractional: several share one),
on a cluster at `--ray-address` or a local one. A worker lost mid-track (killed, out of
memory, node gone) is replaced and its track runs again from scratch on another worker,
up to `--retries` times; stems are published whole (renamed, or uploaded, record last),
so a lost track leaves nothing half-written. Ray is optional:
`pip install 'stemsplit-cli[ray]'`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stemsplit.batch.inputs import Track
from stemsplit.errors import StemsplitError, UsageError
from stemsplit.options import BatchOptions, ModelOptions, Progress, TrackResult

log = logging.getLogger(__name__)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise UsageError(
            "--executor ray needs Ray: pip install 'stemsplit-cli[ray]' (or pip install ray)"
        ) from err
    return ray


class Worker:
    """Body of the Ray actor: one Separator over the driver's plan, for all its tracks."""

    def __init__(self, plan: Any, identity: list[dict[str, Any]], models: ModelOptions,
                 bucket_url: str | None, threads: int | None, jobs: int) -> None:  # fmt: skip
        from stemsplit.batch.dispatch import PlannedSeparator, scratch_folder, staged
        from stemsplit.batch.storage import Bucket

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.bucket = None
        if bucket_url is not None:  # this machine's staging folder, mirrored in the bucket
            staging = scratch_folder("staging")
            plan = staged(plan, staging)
            self.bucket = Bucket(bucket_url, staging)
        self.separator = PlannedSeparator(plan, identity, model_dir=models.model_dir,
                                          offline=models.offline)  # fmt: skip
        self.jobs = jobs

    def close(self) -> None:
        """Remove this worker's staging folder (the run is over)."""
        if self.bucket is not None:
            shutil.rmtree(self.bucket.staging, ignore_errors=True)

    def process(self, track: Track) -> tuple[TrackResult, str]:
        """The track's result, and the node it ran on (for the throughput figures)."""
        import ray

        from stemsplit.batch.dispatch import run_whole

        result = run_whole(self.separator, track, self.bucket, self.jobs)
        return result, ray.get_runtime_context().get_node_id()


def run_on_ray(
    separator: Any,
    tracks: Sequence[Track],
    batch: BatchOptions,
    models: ModelOptions,
    bucket_url: str | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[list[TrackResult], int, int]:
    """Separate `tracks` on Ray workers: results in the order of `tracks`, the number
    of workers and of nodes that ran them."""
    from stemsplit.batch.dispatch import triage
    from stemsplit.batch.storage import Bucket

    device = separator.plan.engine.device
    if device.startswith("cuda") and not batch.gpus_per_worker:  # Ray hides GPUs from it
        raise UsageError(f"--device {device}: a Ray worker sees a GPU only when it holds one: "
                         "add --gpus-per-worker 1 (0.5: two workers per GPU)")  # fmt: skip
    bucket = Bucket(bucket_url, Path(separator.plan.output.out)) if bucket_url else None
    results, todo = triage(separator, tracks, batch.skip_existing, bucket)
    workers, nodes = 0, set()
    if todo:
        ray = import_ray()
        # Ray prints its notes (a worker died, ...) on stdout, which `--json` owns
        with contextlib.redirect_stdout(sys.stderr):
            started = _connect(ray, batch)
            try:
                _check_resources(ray, batch)
                pool = _Pool(ray, separator, batch, models, bucket_url)
                for index, result in pool.run(tracks, todo, bucket):
                    results[index] = result
                    if progress:
                        progress(Progress(index, len(tracks), tracks[index].path, 1.0,
                                          result.status))  # fmt: skip
                workers, nodes = min(batch.ray_workers, len(todo)), pool.nodes
            finally:
                if started:
                    ray.shutdown()
    return [results[i] for i in range(len(tracks))], workers, len(nodes)


def _connect(ray: Any, batch: BatchOptions) -> bool:
    """Join `--ray-address`'s cluster (else Ray's own `RAY_ADDRESS`), or start a local
    one sized for the workers (True: this run started it and shuts it down)."""
    if ray.is_initialized():
        return False
    address = batch.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return False
    cpus = max(1, math.ceil(batch.ray_workers * batch.cpus_per_worker))
    ray.init(num_cpus=cpus, log_to_driver=False, include_dashboard=False)
    return True


def _check_resources(ray: Any, batch: BatchOptions) -> None:
    """A worker no node can hold would wait forever: refuse it at once."""
    total = ray.cluster_resources()
    for name, per_worker, flag in (("CPU", batch.cpus_per_worker, "--cpus-per-worker"),
                                   ("GPU", batch.gpus_per_worker, "--gpus-per-worker")):
        if per_worker > total.get(name, 0):
            raise UsageError(f"{flag} {per_worker:g}: the Ray cluster has {total.get(name, 0):g} "
                             f"{name}s in all, so no worker could start")  # fmt: skip


class _Pool:
    """`workers` actors; a lost one is replaced and its track requeued."""

    def __init__(self, ray: Any, separator: Any, batch: BatchOptions, models: ModelOptions,
                 bucket_url: str | None) -> None:  # fmt: skip
        self.ray = ray
        self.batch = batch
        self.separator = separator
        self.nodes: set[str] = set()
        plan = ray.put(separator.plan)
        identity = separator.model_identity()
        actor = ray.remote(num_cpus=batch.cpus_per_worker, num_gpus=batch.gpus_per_worker,
                           max_restarts=0)(Worker)  # fmt: skip
        threads = batch.threads or max(1, math.floor(batch.cpus_per_worker))
        self.new = lambda: actor.remote(plan, identity, models, bucket_url, threads, batch.jobs)

    def run(self, tracks: Sequence[Track], todo: list[int], bucket: Any) -> Any:
        """Yield (index, TrackResult) as tracks finish."""
        ray = self.ray
        queue = collections.deque(todo)
        idle = [self.new() for _ in range(min(self.batch.ray_workers, len(todo)))]
        running: dict[Any, tuple[Any, int]] = {}
        losses: collections.Counter[int] = collections.Counter()
        try:
            while queue or running:
                while queue and idle:
                    worker, index = idle.pop(), queue.popleft()
                    running[worker.process.remote(tracks[index])] = (worker, index)
                [finished], _ = ray.wait(list(running), num_returns=1)
                worker, index = running.pop(finished)
                try:
                    result, node = ray.get(finished)
                    self.nodes.add(node)
                except ray.exceptions.RayTaskError as err:  # raised by our code in the worker
                    failure, fatal = _our_error(err, ray.exceptions.RayTaskError)
                    if fatal:
                        raise failure from err
                    idle.append(worker)
                    yield index, TrackResult(tracks[index].path, "failed", error=str(failure))
                    continue
                except ray.exceptions.RayError as err:  # the worker is gone: run it again
                    ray.kill(worker, no_restart=True)
                    idle.append(self.new())
                    losses[index] += 1
                    outcome = self._after_loss(tracks[index], losses[index], err, bucket)
                    if outcome is None:
                        queue.appendleft(index)
                    else:
                        yield index, outcome
                    continue
                idle.append(worker)
                result.retries = losses[index]
                yield index, result
        finally:
            busy = [w for w, _ in running.values()]
            if not busy:  # a finished run: the workers tidy up; an interrupted one: killed
                ray.wait([w.close.remote() for w in idle], num_returns=len(idle), timeout=30)
            for worker in [*idle, *busy]:
                ray.kill(worker, no_restart=True)

    def _after_loss(self, track: Track, losses: int, err: BaseException, bucket: Any
                    ) -> TrackResult | None:  # fmt: skip
        """None: run the track again. Its result when the lost worker had published it
        whole (never written twice) or when the retries are spent."""
        from stemsplit.batch.dispatch import triage

        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.warning("%s: worker lost (%s); attempt %d of %d", track.path.name, reason,
                    losses + 1, self.batch.retries + 1)  # fmt: skip
        done, _ = triage(self.separator, [track], True, bucket) if self.batch.skip_existing \
            else ({}, [0])
        if done:
            result = done[0]
            result.status, result.reason = "done", "published by a worker lost after it"
            result.retries = losses - 1
            return result
        if losses > self.batch.retries:
            return TrackResult(track.path, "failed", error=f"{track.path}: the worker running "
                               f"it was lost {losses} time(s); last: {reason}",
                               retries=losses - 1)  # fmt: skip
        return None


def _our_error(err: BaseException, ray_error: type) -> tuple[StemsplitError, bool]:
    """The StemsplitError a worker raised outside a track's own work (a model that does
    not load, an interruption), which stops the run (True); else Ray's message in one
    line for that track alone (False).

    Ray wraps a task's exception in a class deriving from both RayTaskError and the
    original type; its `cause` is the original, with the plain message.
    """
    cause: BaseException | None = err
    seen: set[int] = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, StemsplitError) and not isinstance(cause, ray_error):
            return cause, True
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    last = lines[-1] if lines else type(err).__name__
    return StemsplitError(f"Ray: {last}"), False
