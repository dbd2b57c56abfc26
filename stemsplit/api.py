"""The Python API, and the one door the CLI goes through.

`separate(inputs, **options)` splits files or folders; options are the fields of the
option types in `stemsplit.options` (grouped there: models, stems, engine, output,
batch), given by name here. Every value is checked when the options are built, and the
whole run is planned (`plan.make_plan`) before any download, decode or model load.
The zoo, evaluation and report functions the CLI needs are re-exported at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.allocator import keep_large_blocks_on_heap
from stemsplit.errors import StemsplitError, UsageError
from stemsplit.options import (
    DEFAULT_MODEL,
    BatchOptions,
    EngineSettings,
    ModelOptions,
    ModelSpec,
    OutputOptions,
    PipeInput,
    Progress,
    StemOptions,
    TrackResult,
)
from stemsplit.request import Request
from stemsplit.startup import early_input  # for the CLI: decodes while torch imports

if TYPE_CHECKING:
    from stemsplit.separator import Separator as PlanSeparator


class BatchResults(list[TrackResult]):
    """Per-track `TrackResult`s, plus the batch's report index page (`report_index`, or None)
    and how many workers and nodes separated them (the throughput figures)."""

    def __init__(self, results: Iterable[TrackResult] = (), index: Path | None = None,
                 workers: int = 1, nodes: int = 1) -> None:  # fmt: skip
        super().__init__(results)
        self.report_index = index
        self.workers = workers
        self.nodes = nodes


# Names `separate()` accepts that are not a field of the option types.
_ALIASES = {"segment": "segment_seconds"}
_GROUPS = (StemOptions, EngineSettings, OutputOptions, BatchOptions, PipeInput)


def build_request(
    model: str | Sequence[Any] | None = None,
    checkpoint: str | Path | Sequence[str | Path] | None = None,
    config: str | Path | Sequence[str | Path] | None = None,
    model_type: str | None = None,
    ensemble: str | None = None,
    weights: Sequence[Any] | Mapping[str, Any] | None = None,
    model_dir: str | Path | None = None,
    offline: bool | None = None,
    overwrite: bool = False,
    recipe: str | Path | Any = None,
    require_licence: str | None = None,
    **options: Any,
) -> Request:
    """The checked option groups for `options` (UsageError names a bad value).

    `recipe` (a shipped recipe's name, a recipe file, or a `recipes.Recipe`) replaces the
    models and stems: its steps say both (`stemsplit.recipes`)."""
    grouped: dict[type, dict[str, Any]] = {group: {} for group in _GROUPS}
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        group = next((g for g in _GROUPS if name in {f.name for f in fields(g)}), None)
        if group is None:
            raise UsageError(f"unknown option {key!r}")
        grouped[group][name] = value
    stems = grouped[StemOptions]
    if stems.get("stems") is not None:
        stems["stems"] = tuple(stems["stems"])
    output = grouped[OutputOptions]
    if str(output.get("out")) == "-":  # `-o -`: one stem to stdout
        del output["out"]
        output["stdout"] = True
    if output.get("out") is not None:  # `-o s3://...`: staged locally, then uploaded
        from stemsplit.batch.storage import is_url, local_path

        out = str(output["out"])
        if is_url(out):
            output["out"] = local_path(out) or Path("separated")
            output["out_url"] = None if local_path(out) else out.rstrip("/")
    for key in ("out", "reference"):  # absolute and normalised: `play/../fx` -> `fx`
        if output.get(key) is not None:
            output[key] = Path(os.path.abspath(Path(output[key]).expanduser()))
    if "mp3_bitrate" in output and str(output.get("format", "wav")).lower() != "mp3":
        raise UsageError(f"--mp3-bitrate {output['mp3_bitrate']} sets the bitrate of -f mp3, "
                         f"not of -f {output.get('format', 'wav')}: drop it or add -f mp3")
    batch = grouped[BatchOptions]
    if overwrite:
        batch["skip_existing"] = False
    if output.get("stdout"):
        from stemsplit.options import check_not_stem_file, check_one_stem

        check_not_stem_file(str(output.get("format", "")))
        check_one_stem(StemOptions(**stems))
    chain = None
    if recipe is not None:
        from stemsplit.recipes import load_recipe

        given = [flag for flag, value in (("-m/--model", model), ("--checkpoint", checkpoint),
                 ("--config", config), ("--model-type", model_type), ("--ensemble", ensemble),
                 ("--weights", weights), ("-s/--stems", stems.get("stems")),
                 ("--two-stems", stems.get("two_stems"))) if value]  # fmt: skip
        if given:
            raise UsageError(f"--recipe and {', '.join(given)} contradict each other: a "
                             "recipe's steps choose the models and stems")  # fmt: skip
        chain = load_recipe(recipe)
    return Request(
        recipe=chain,
        models=ModelOptions(
            models=_model_specs(model, checkpoint, config, model_type),
            ensemble=ensemble,
            weights=weights,
            model_dir=Path(model_dir).expanduser().absolute() if model_dir else None,
            offline=offline,
            require_licence=require_licence,
        ),
        stems=StemOptions(**stems),
        engine=EngineSettings(**grouped[EngineSettings]),
        output=OutputOptions(**output),
        batch=BatchOptions(**batch),
        pipe=PipeInput(**grouped[PipeInput]),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Path)) or hasattr(value, "members"):
        return [value]
    return list(value)


def _model_specs(model: Any, checkpoint: Any, config: Any, model_type: str | None
                 ) -> tuple[ModelSpec, ...]:  # fmt: skip
    """`-m` names (or ready bundles), then `--checkpoint` files each with its `--config`."""
    names, checkpoints, configs = _as_list(model), _as_list(checkpoint), _as_list(config)
    if configs and not checkpoints:
        raise UsageError(
            f"--config {configs[0]} without --checkpoint: a config describes a checkpoint "
            "file; zoo models (-m) bring their own"
        )
    if model_type is not None and len(checkpoints) != 1:
        raise UsageError("--model-type names the architecture of one --checkpoint")
    if model_type is not None:
        from stemsplit.errors import ModelError
        from stemsplit.models import registry

        try:
            registry.get(model_type)
        except ModelError as err:
            raise UsageError(f"--model-type: {err}") from None
    from stemsplit.zoo.local import pair_configs  # (reads files only when counts differ)

    paired = pair_configs([Path(c) for c in checkpoints], [Path(c) for c in configs])
    specs = [ModelSpec(bundle=n) if hasattr(n, "members") else ModelSpec(name=str(n))
             for n in names]  # fmt: skip
    for index, path in enumerate(checkpoints):
        specs.append(ModelSpec(checkpoint=Path(path), model_type=model_type,
                               config=paired[index]))  # fmt: skip
    return tuple(specs) or (ModelSpec(name=DEFAULT_MODEL),)


def plan_run(request: Request, download_progress: Callable[..., Any] | None = None
             ) -> PlanSeparator:  # fmt: skip
    """The `RunPlan` and a `Separator` for a request from `build_request`."""
    from stemsplit.plan import make_plan
    from stemsplit.separator import Separator as PlanSeparator

    models = request.models
    threads = request.batch.threads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if request.recipe is not None:
        from stemsplit.recipes import plan_recipe

        plan = plan_recipe(request.recipe, request.engine, request.output)
    else:
        plan = make_plan(models, request.stems, request.engine, request.output)
    from stemsplit.zoo.catalog import require_licence

    # ModelOptions resolves `require_licence` (flag, environment or "any") when built
    require_licence([m.spec.name for m in plan.models if m.spec.name], str(models.require_licence))
    if plan.output.stem_file:  # a --stem-map naming a stem the run lacks: refused now
        from stemsplit.audio.stem_mp4 import resolve_slots

        resolve_slots(plan.stems.written, plan.output.stem_map)
    return PlanSeparator(plan, model_dir=models.model_dir, offline=models.offline,
                     download_progress=download_progress)  # fmt: skip


def separate(
    inputs: str | Path | Sequence[str | Path],
    *,
    progress: Callable[[Progress], None] | None = None,
    **options: Any,
) -> BatchResults:
    """Split files (or folders) into stems; returns one `TrackResult` per track.

    Options by name: model (a zoo name or preset, or a list for an ensemble),
    checkpoint/config (local files; configs pair, in order, with the checkpoints that
    need one: `stemsplit.zoo.local.pair_configs`), model_type, ensemble, weights,
    model_dir, offline; recipe (a shipped recipe's name or a TOML file: chained and
    routed steps instead of model and stems, `stemsplit.recipes`); stems, two_stems, other_method; device, precision, batch_size,
    segment, overlap, shifts, seed, tta; out, filename, format, bit_depth, mp3_bitrate,
    clip, samplerate, report, reference; recursive, skip_existing (or overwrite), jobs,
    executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker, retries, shard,
    threads. Inputs and `out` may be fsspec URLs (`s3://bucket/prefix`, docs/scale-out.md).
    See `stemsplit.options` for each.
    """
    request = build_request(**options)
    return run_request([inputs] if isinstance(inputs, (str, Path)) else list(inputs),
                       request, progress)  # fmt: skip


def run_request(
    inputs: Sequence[str | Path],
    request: Request,
    progress: Callable[[Progress], None] | None = None,
) -> BatchResults:
    """Plan, expand the inputs, check the output layout, then run (locally or on Ray)."""
    from stemsplit.batch.inputs import expand_inputs
    from stemsplit.batch.run import run_batch, write_batch_index
    from stemsplit.batch.storage import is_url
    from stemsplit.layout import check_clashes, output_paths

    batch: BatchOptions = request.batch
    pipe = request.pipe
    if any(str(i) == "-" for i in inputs) or request.output.stdout:
        if len(inputs) != 1 and any(str(i) == "-" for i in inputs):
            raise UsageError("stdin (-) is the only input of its run: give no other input")
        if len(inputs) != 1:
            raise UsageError(f"-o - streams the stem of one file: give one input, not "
                             f"{len(inputs)}")  # fmt: skip
        return BatchResults([run_pipe(inputs[0], request, progress=progress)])
    if pipe is not None and pipe.given:
        raise UsageError("--input-format describes stdin: give - as the input")
    if request.output.report:  # a report that cannot be drawn fails before any work
        from stemsplit.report import require_pillow

        require_pillow()
    tracks = expand_inputs(inputs, recursive=batch.recursive)
    if batch.shard_of is not None:  # one task of an array job (docs/scale-out.md)
        from stemsplit.batch.inputs import shard

        tracks = shard(tracks, *batch.shard_of)
    # Tracks that would share files are refused before a checkpoint is even read (every
    # stem shares the template, so one placeholder stem finds every clash).
    if batch.executor == "ray":
        from stemsplit.batch.ray import import_ray

        import_ray()  # a missing Ray is a usage error before anything is read
    check_clashes({t.path: output_paths(t.path, request.label, ["stem"], request.output, t.reldir,
                                        t.number_in(position))
                   for position, t in enumerate(tracks, 1)})  # fmt: skip
    if progress:  # planning may read a checkpoint (and import torch): say so at once
        progress(Progress(-1, len(tracks), Path(request.label), 0.0, "loading"))
    separator = plan_run(request)
    out_url = request.output.out_url
    if batch.executor == "ray":  # the driver's plan runs on every worker
        from stemsplit.batch.ray import run_on_ray

        remote = [type(t)(t.path.absolute(), t.reldir) for t in tracks]  # may run elsewhere
        results, workers, nodes = run_on_ray(separator, remote, batch, request.models,
                                             out_url, progress)  # fmt: skip
    elif out_url or any(is_url(t.path) for t in tracks):  # whole tracks, one at a time
        from stemsplit.batch.dispatch import run_here

        results = run_here(separator, tracks, batch, request.models, out_url, progress)
    else:
        results = run_batch(separator, tracks, skip_existing=batch.skip_existing,
                            progress=progress, jobs=batch.jobs)  # fmt: skip
    out = BatchResults(results)
    if batch.executor == "ray":
        out.workers, out.nodes = workers, nodes
    if request.output.report and len(tracks) > 1 and not out_url:
        out.report_index = write_batch_index(results)
    return out


def dry_run(inputs: Sequence[str | Path], request: Request) -> Any:
    """What `run_request(inputs, request)` would do and cost, touching nothing
    (`stemsplit.dry_run`): a `DryRun`."""
    from stemsplit.dry_run import dry_run as plan_only

    return plan_only(list(inputs), request, plan_run(request))


def run_pipe(
    source: str | Path,
    request: Request,
    stdin: Any = None,
    stdout: Any = None,
    progress: Callable[[Progress], None] | None = None,
) -> TrackResult:
    """One input from stdin (`source` "-") or a file, to one stem on stdout (`-o -`) or
    to stem files: the pipe counterpart of `run_request` (docs/pipes.md)."""
    from stemsplit import streaming

    streaming.check_pipe(source, request)
    return streaming.run_pipe(source, plan_run(request), request, stdin, stdout, progress)


def separate_array(audio: Any, samplerate: int, *, model: Any = None, checkpoint: Any = None,
                   **options: Any) -> dict[str, Any]:
    """Split an array or tensor (`(channels, samples)`, or `(samples,)`) into
    `{stem: float32 array}` of the input's shape: the numbers a file holding the same
    samples gives. Options as `separate` (model, checkpoint, config, stems, two_stems,
    keep, device, precision, segment, overlap, shifts, ..., samplerate for the output
    rate); file-only options (out, filename, format, report, batch) do not apply."""
    request = build_request(model=model, checkpoint=checkpoint, **options)
    return plan_run(request).separate_array(audio, samplerate)


class Separator:
    """Models loaded once, then any number of arrays, live streams or files.

    Built from names, as `separate` takes them: `Separator(model="htdemucs",
    stems=["vocals"])`, `Separator(checkpoint="model.ckpt", config="config.yaml")`,
    `Separator(model=["htdemucs", "bs-roformer"], ensemble="avg", device="cuda")`; file
    options (out, format, filename, ...) apply to `separate_file`. Every value is
    checked here, and the run planned, before anything is downloaded or loaded; the
    models load on first use.
    """

    def __init__(self, model: str | Sequence[Any] | None = None, *,
                 checkpoint: str | Path | Sequence[str | Path] | None = None,
                 stems: Sequence[str] | None = None, **options: Any) -> None:  # fmt: skip
        self._request = build_request(model=model, checkpoint=checkpoint, stems=stems,
                                      **options)  # fmt: skip
        self._separator = plan_run(self._request)

    @property
    def stems(self) -> tuple[str, ...]:
        """The stems every call returns (or writes), in order."""
        return tuple(self._separator.plan.stems.written)

    @property
    def models(self) -> tuple[str, ...]:
        """The models that run, by name (a local checkpoint's label)."""
        return tuple(model.name for model in self._separator.plan.models)

    def separate_array(self, audio: Any, samplerate: int,
                       on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """`{stem: float32 array}` for `audio` (numpy array or torch tensor, `(channels,
        samples)` or `(samples,)`), each of the input's shape: the numbers a file holding
        the same samples gives."""
        return self._separator.separate_array(audio, samplerate, on_progress)

    def stream(self, blocks: Iterable[Any], samplerate: int, *, keep_shape: bool = True
               ) -> Any:  # fmt: skip
        """Live separation: a generator of `{stem: block}` for an iterable of
        `(channels, n)` blocks of any sizes, each stem block yielded as soon as it is
        final (docs/pipes.md)."""
        return self._separator.stream(blocks, samplerate, keep_shape=keep_shape)

    def separate_file(self, path: str | Path,
                      progress: Callable[[Progress], None] | None = None) -> TrackResult:
        """Separate one audio file into stem files (OUT/<model>/<track>/<stem>.<ext> by
        default; the file options given to the constructor); returns its `TrackResult`
        (`.stems` maps each stem to its file). A track done before with the same models
        and settings is skipped unless `overwrite=True` was given; a failure raises."""
        from stemsplit.batch.inputs import expand_inputs
        from stemsplit.batch.run import run_batch

        batch: BatchOptions = self._request.batch
        (result,) = run_batch(self._separator, expand_inputs([path]), progress=progress,
                              skip_existing=batch.skip_existing, jobs=batch.jobs)  # fmt: skip
        if result.status == "failed":
            raise StemsplitError(result.error or f"{path}: failed")
        return result

    def __repr__(self) -> str:
        return f"Separator(models={list(self.models)}, stems={list(self.stems)})"


def separate_many(paths: Sequence[str | Path], **options: Any) -> BatchResults:
    """`separate` over many inputs (same options); per-track results."""
    return separate(list(paths), **options)


def list_models() -> list[dict[str, Any]]:
    """The zoo's model cards, then its presets (`"kind": "preset"`), as plain dicts."""
    from stemsplit.zoo import catalog

    return [card.as_dict() for card in catalog.list_cards()] + [
        p.as_dict() for p in catalog.list_presets()
    ]


def list_recipes() -> list[dict[str, Any]]:
    """The shipped recipes (`weights/recipes.toml`), as plain dicts."""
    from stemsplit.recipes import list_recipes as shipped

    return [recipe.as_dict() for recipe in shipped()]


def recipe_info(ref: str | Path) -> dict[str, Any]:
    """One recipe (shipped name or file), checked against the zoo's cards: its steps,
    outputs and chain. Planning loads a step's local checkpoint, never downloads."""
    from stemsplit.options import EngineSettings, OutputOptions
    from stemsplit.recipes import load_recipe, plan_recipe

    recipe = load_recipe(ref)
    chain = plan_recipe(recipe, EngineSettings(), OutputOptions()).recipe
    assert chain is not None  # a recipe's plan always carries its steps
    info = recipe.as_dict()
    info["chain"] = chain.chain()
    for step, planned in zip(info["steps"], chain.steps):
        step["models"] = [m.name for m in planned.plan.models]
        step["stems"] = list(planned.plan.stems.written)
    return info


# What the CLI's `models`, `eval` and `report` commands call (the CLI imports only
# this module and `errors`); each is the library function itself.
def zoo() -> Any:
    """The zoo's catalog and cache functions (`stemsplit.zoo.catalog`, `.fetch`)."""
    from types import SimpleNamespace

    from stemsplit import bench
    from stemsplit.models import registry
    from stemsplit.zoo import catalog, fetch

    return SimpleNamespace(catalog=catalog, fetch=fetch, registry=registry, bench=bench)


def bench_model(name: str, *, seconds: float = 30.0, device: str = "auto",
                precision: str = "fp32", model_dir: str | Path | None = None,
                offline: bool | None = None) -> Any:  # fmt: skip
    """Measure zoo model `name` on this machine (`stemsplit.bench`) and keep the result in
    the model cache; returns the `BenchResult`."""
    from stemsplit.bench import measure, record
    from stemsplit.engine.runner import resolve_device
    from stemsplit.zoo.fetch import cache_dir

    separator = plan_run(build_request(model=name, device=device, precision=precision,
                                       model_dir=model_dir, offline=offline))  # fmt: skip
    (planned,) = separator.plan.models
    result = measure(separator, planned.name, resolve_device(device), precision, seconds)
    record(result, cache_dir(model_dir))
    return result


def evaluate_folders(*args: Any, **kwargs: Any) -> Any:
    """`stemsplit.evaluate.evaluate_folders`: scores of estimates against references."""
    from stemsplit.evaluate import evaluate_folders as run

    return run(*args, **kwargs)


def evaluate_model(*args: Any, **kwargs: Any) -> Any:
    """`stemsplit.evaluate.evaluate_model`: separate a dataset with a model, then score."""
    from stemsplit.evaluate import evaluate_model as run

    return run(*args, separate=separate, **kwargs)


def report_folder(*args: Any, **kwargs: Any) -> Any:
    """`stemsplit.report.report_folder`: listening reports for stems already written."""
    from stemsplit.report import report_folder as run

    return run(*args, **kwargs)


__all__ = [
    "BatchResults",
    "Progress",
    "Separator",
    "StemsplitError",
    "TrackResult",
    "build_request",
    "early_input",
    "evaluate_folders",
    "evaluate_model",
    "keep_large_blocks_on_heap",
    "list_models",
    "list_recipes",
    "plan_run",
    "recipe_info",
    "report_folder",
    "run_pipe",
    "run_request",
    "separate",
    "separate_array",
    "separate_many",
    "zoo",
]
