"""The Python API: `separate()`, `separate_many()`, `Separator`, `list_models()`.

The CLI calls only this. A `Separator` loads its model(s) once and separates any
number of tracks; `separate()` is the one-call convenience around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemsplit.batch import (
    TrackResult,
    check_clashes,
    check_template,
    expand_inputs,
    output_paths,
    per_track_folder,
    run_batch,
    write_batch_index,
)
from stemsplit.engine.runner import EngineSettings
from stemsplit.errors import ModelError, StemsplitError, UsageError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "htdemucs"
DEFAULT_TEMPLATE = "{track}/{stem}.{ext}"


@dataclass(frozen=True)
class Progress:
    """A progress event: `fraction` of track `index` (of `count`) is done."""

    index: int
    count: int
    track: Path
    fraction: float
    stage: str = "separating"


@dataclass
class OutputOptions:
    """Where and how stems are written."""

    out: Path = Path("separated")
    filename: str = DEFAULT_TEMPLATE
    format: str = "wav"
    bit_depth: str | int | None = None
    mp3_bitrate: int = 320
    clip: str = "clamp"
    samplerate: str | int = "input"
    report: bool = False  # report.html beside each track's stems
    reference: Path | None = None  # reference stems: SDR in the report


@dataclass
class StemOptions:
    """Which stems are written."""

    stems: Sequence[str] | None = None
    two_stems: str | None = None
    other_method: str = "minus"


@dataclass
class ModelOptions:
    """Which model(s), and where their files come from."""

    names: Sequence[Any] = (DEFAULT_MODEL,)
    checkpoint: Path | None = None
    config: Path | None = None
    ensemble: str | None = None  # None: the preset's algorithm, else "avg"
    weights: Sequence[Any] | Mapping[str, Any] | None = None  # per name, or keyed by name
    model_dir: Path | None = None
    offline: bool | None = None


class Separator:
    """Models loaded once, applied to many tracks."""

    def __init__(
        self,
        models: ModelOptions | None = None,
        engine: EngineSettings | None = None,
        output: OutputOptions | None = None,
        stems: StemOptions | None = None,
        threads: int | None = None,
        download_progress: Callable | None = None,
    ) -> None:
        self.models = models or ModelOptions()
        self.engine = engine or EngineSettings()
        self.output = output or OutputOptions()
        self.stem_options = stems or StemOptions()
        if threads is not None:
            import torch

            if threads < 1:
                raise UsageError("--threads must be at least 1")
            torch.set_num_threads(threads)
        self.label = self._expand()
        self._download_progress = download_progress
        self._bundles: list | None = None
        self._names_needs = self._members_to_load()
        if self._names_needs is None:  # a checkpoint or ready bundles: load now
            self._bundles = self._load()
            self.heads: list = self._bundles
        else:  # zoo names: stems and output paths come from the cards, weights later
            from stemsplit.zoo.catalog import get_card

            self.heads = [get_card(name) for name in self._names_needs[0]]
        self.name = self.label or "+".join(h.name for h in self.heads)
        self.plan = self._plan()
        self.runners: dict[int, Any] = {}

    @property
    def bundles(self) -> list:
        """The loaded models; zoo models are fetched and loaded on first use, so a batch
        whose stems all exist already never downloads or loads them."""
        if self._bundles is None:
            self._bundles = self._load()
            for head, bundle in zip(self.heads, self._bundles):
                if bundle.residual != head.residual:
                    raise ModelError(
                        f"model {head.name!r}: its config names a residual stem "
                        f"{bundle.residual!r} the card does not; add `residual = "
                        f"\"{bundle.residual}\"` to the card"
                    )
        return self._bundles

    def _members_to_load(self) -> tuple[list, list] | None:
        """Zoo names and the stems each must give; None for a checkpoint or bundles."""
        if self.models.checkpoint is not None:
            return None
        names = list(self.models.names)
        if any(hasattr(name, "members") for name in names):
            return None
        needs: list[list[str] | None] = [self._needed_guess()] * len(names)
        if len(names) > 1:
            names, needs = self._ensemble_needs(names)
        return names, needs

    def _expand(self) -> str | None:
        """Replace presets by their models, weights, algorithm and default stems."""
        if self.models.checkpoint is not None:
            return None
        from dataclasses import replace

        from stemsplit.zoo.catalog import expand_models

        from stemsplit.engine.ensemble import check_algorithm

        expanded = expand_models(self.models.names, self.models.weights, self.models.ensemble)
        check_algorithm(expanded.ensemble)
        self.models = replace(
            self.models, names=expanded.names, weights=expanded.weights,
            ensemble=expanded.ensemble,
        )  # fmt: skip
        so = self.stem_options
        if expanded.stems and not so.stems and not so.two_stems:
            self.stem_options = replace(so, stems=list(expanded.stems))
        return expanded.label

    def _load(self) -> list:
        from stemsplit.zoo.loader import load_bundle

        if self.models.checkpoint is not None:
            return [
                load_bundle(
                    checkpoint=self.models.checkpoint,
                    config=self.models.config,
                    stems=self._needed_guess(),
                )
            ]
        if self._names_needs is None:  # ready bundles (tests, advanced use)
            names = list(self.models.names)
            needs: list[list[str] | None] = [self._needed_guess()] * len(names)
            if len(names) > 1:
                names, needs = self._ensemble_needs(names)
        else:
            names, needs = self._names_needs
        bundles = []
        for name, stems in zip(names, needs):
            if hasattr(name, "members"):
                bundles.append(name)
                continue
            bundles.append(
                load_bundle(
                    name=name,
                    stems=stems,
                    offline=self.models.offline,
                    model_dir=self.models.model_dir,
                    progress=self._download_progress,
                )
            )
        return bundles

    def _needed_guess(self) -> list[str] | None:
        """Stems requested up front (lets bags skip members before loading them)."""
        so = self.stem_options
        if so.two_stems and so.other_method == "minus":
            return [so.two_stems]
        if so.stems:
            return list(so.stems)
        return None

    def _ensemble_needs(self, names: list) -> tuple[list, list[list[str] | None]]:
        """Each model's stems the requested output needs, from the cards, before loading.

        Models that no written stem needs are dropped (neither downloaded nor run);
        bags then load only the members those stems need.
        """
        from stemsplit.engine.ensemble import plan_ensemble
        from stemsplit.engine.pipeline import plan_stems
        from stemsplit.zoo.catalog import get_card

        cards = [name if hasattr(name, "members") else get_card(name) for name in names]
        models = [(tuple(c.sources), c.residual) for c in cards]
        so = self.stem_options
        requested = [*(so.stems or ()), *([so.two_stems] if so.two_stems else [])]
        layout = plan_ensemble(models, requested, self.models.weights, self.models.ensemble)
        plan = plan_stems(layout.stems, None, so.stems, so.two_stems, so.other_method)
        kept, needs, weights = [], [], []
        for index, (name, (sources, _)) in enumerate(zip(names, models)):
            need = layout.needs(index, plan.needed)
            if not need:
                log.info("%s: no requested stem needs it; not run", getattr(name, "name", name))
                continue
            kept.append(name)
            needs.append(None if need == set(sources) else [s for s in sources if s in need])
            weights.append(self.models.weights[index] if self.models.weights else {})
        from dataclasses import replace

        self.models = replace(self.models, names=kept, weights=weights)
        return kept, needs

    def _plan(self):
        from stemsplit.engine.pipeline import plan_stems

        so = self.stem_options
        if len(self.heads) == 1:
            bundle = self.heads[0]
            return plan_stems(
                bundle.sources, bundle.residual, so.stems, so.two_stems, so.other_method
            )
        from stemsplit.engine.ensemble import plan_ensemble

        models = [(tuple(b.sources), b.residual) for b in self.heads]
        requested = [*(so.stems or ()), *([so.two_stems] if so.two_stems else [])]
        layout = plan_ensemble(models, requested, self.models.weights, self.models.ensemble)
        return plan_stems(layout.stems, None, so.stems, so.two_stems, so.other_method)

    def outputs_for(self, track: Path) -> dict[str, Path]:
        """The stem files `track` will produce."""
        return output_paths(track, self.name, self.plan.written, self.output)

    def describe(self) -> dict[str, Any]:
        """Models and settings, as `stemsplit.json` records them beside the stems."""
        from dataclasses import asdict

        from stemsplit import __version__

        return {
            "stemsplit": __version__,
            "models": [b.name for b in self.heads],
            "settings": {
                **asdict(self.engine),
                "stems": list(self.plan.written),
                "ensemble": self.models.ensemble if len(self.heads) > 1 else None,
                "format": self.output.format,
                "bit_depth": self.output.bit_depth,
                "clip": self.output.clip,
                "samplerate": self.output.samplerate,
            },
        }

    def prepare(self, track: Path, spool_dir: Path):
        """Decode `track` into spool files at the models' rates (a batch does this ahead)."""
        from stemsplit.engine.pipeline import prepare_input

        return prepare_input(track, [b.samplerate for b in self.heads], spool_dir)

    def separate_track(
        self,
        track: Path,
        on_progress: Callable[[float], None] | None = None,
        *,
        prepared: Any = None,
        writer_factory: Callable | None = None,
        spool_dir: Path | None = None,
    ) -> tuple[dict[str, Path], float, dict[str, int]]:
        """Separate one file; returns stem paths, audio seconds and clip counts."""
        from stemsplit.engine.pipeline import TrackJob, run_track

        outputs = self.outputs_for(track)
        job = TrackJob(
            input=track,
            outputs=outputs,
            spool_dir=spool_dir or next(iter(outputs.values())).parent,
            settings=self.engine,
            output_rate=self.output.samplerate,
            writer_options={
                "format": self.output.format,
                "bit_depth": self.output.bit_depth,
                "mp3_bitrate": self.output.mp3_bitrate,
                "clip": self.output.clip,
            },
            prepared=prepared,
            writer_factory=writer_factory,
        )
        outcome = run_track(
            job,
            self.bundles,
            self.plan,
            self.models.ensemble,
            self.models.weights,
            self.runners,
            on_progress,
        )
        return outcome.stems, outcome.audio_seconds, outcome.clipped_samples

    def separate_many(
        self,
        inputs: Sequence[str | Path],
        recursive: bool = False,
        skip_existing: bool = True,
        progress: Callable[[Progress], None] | None = None,
        jobs: int = 1,
    ) -> BatchResults:
        """Separate every track of `inputs`; a bad file fails alone, the rest go on."""
        tracks = expand_inputs(inputs, recursive=recursive)
        results = run_batch(self, tracks, skip_existing=skip_existing, progress=progress,
                            jobs=jobs)
        return _with_index(results, self.output.report and len(tracks) > 1)


class BatchResults(list):
    """Per-track `TrackResult`s, plus the batch's report index page (or None)."""

    index: Path | None = None


def _with_index(results: list[TrackResult], write: bool) -> BatchResults:
    batch = BatchResults(results)
    if write:
        batch.index = write_batch_index(results)
    return batch


def separate(
    inputs: str | Path | Sequence[str | Path],
    *,
    model: str | Sequence[Any] = DEFAULT_MODEL,
    checkpoint: str | Path | None = None,
    config: str | Path | None = None,
    out: str | Path = "separated",
    filename: str = DEFAULT_TEMPLATE,
    format: str = "wav",
    bit_depth: str | int | None = None,
    mp3_bitrate: int = 320,
    stems: Sequence[str] | None = None,
    two_stems: str | None = None,
    other_method: str = "minus",
    samplerate: str | int = "input",
    clip: str = "clamp",
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int | None = None,
    segment: float | None = None,
    overlap: float | None = None,
    shifts: int = 0,
    seed: int = 0,
    tta: bool = False,
    threads: int | None = None,
    ensemble: str | None = None,
    weights: Sequence[Any] | Mapping[str, Any] | None = None,
    model_dir: str | Path | None = None,
    offline: bool | None = None,
    recursive: bool = False,
    skip_existing: bool = True,
    overwrite: bool = False,
    jobs: int = 1,
    report: bool = False,
    reference: str | Path | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 2,
    progress: Callable[[Progress], None] | None = None,
) -> BatchResults:
    """Split files (or folders) into stems; returns one result per track.

    `skip_existing` skips tracks whose stems are all there (`overwrite=True` redoes
    them); `jobs` threads decode and encode beside the model (0: all in one thread);
    `report` writes report.html beside each track's stems (and an index for a batch).
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    # Cheap checks before any model is loaded (or downloaded).
    check_template(filename)
    if executor not in ("local", "ray"):
        raise UsageError(f"unknown executor {executor!r}: use local or ray")
    if jobs < 0:
        raise UsageError("--jobs must be 0 or more")
    if report and not per_track_folder(filename):
        raise UsageError("--report needs a folder per track: keep {track} in the folder part "
                         "of --filename (e.g. {track}/{stem}.{ext})")
    if reference is not None and not Path(reference).is_dir():
        raise UsageError(f"--reference {reference}: not a folder of reference stems")
    tracks = expand_inputs(inputs, recursive=recursive)
    names = [model] if isinstance(model, str) or hasattr(model, "members") else list(model)
    _check_track_clashes(tracks, names, checkpoint, out, filename)
    options = dict(
        models=ModelOptions(
            names=names,
            checkpoint=Path(checkpoint).absolute() if checkpoint else None,
            config=Path(config).absolute() if config else None,
            ensemble=ensemble,
            weights=weights,
            model_dir=Path(model_dir).absolute() if model_dir else None,
            offline=offline,
        ),
        engine=EngineSettings(
            device=device,
            precision=precision,
            batch_size=batch_size,
            segment_seconds=segment,
            overlap=overlap,
            shifts=shifts,
            seed=seed,
            tta=tta,
        ),
        output=OutputOptions(
            out=Path(out).absolute(),
            filename=filename,
            format=format,
            bit_depth=bit_depth,
            mp3_bitrate=mp3_bitrate,
            clip=clip,
            samplerate=samplerate,
            report=report,
            reference=Path(reference).absolute() if reference else None,
        ),
        stems=StemOptions(stems=stems, two_stems=two_stems, other_method=other_method),
        threads=threads,
    )
    skip = skip_existing and not overwrite
    if executor == "ray":
        from stemsplit.batch_ray import run_on_ray

        tracks = [t.absolute() for t in tracks]  # Ray workers may run elsewhere
        results = run_on_ray(options, tracks, ray_address, ray_workers, skip, progress)
    else:
        separator = Separator(**options)
        results = run_batch(separator, tracks, skip_existing=skip, progress=progress, jobs=jobs)
    return _with_index(results, report and len(tracks) > 1)


def _check_track_clashes(tracks, names, checkpoint, out, filename) -> None:
    """Two tracks mapping to the same files fail before any model is loaded."""
    guess = Path(checkpoint).stem if checkpoint else "+".join(map(str, names))
    template = OutputOptions(out=Path(out), filename=filename, format="{ext}")
    check_clashes({t: output_paths(t, guess, ["{stem}"], template) for t in tracks})


def separate_many(paths: Sequence[str | Path], **options: Any) -> BatchResults:
    """`separate` over many inputs (same options); per-track results."""
    return separate(list(paths), **options)


def list_models() -> list[dict[str, Any]]:
    """The zoo's model cards, then its presets (`"kind": "preset"`), as plain dicts."""
    from stemsplit.zoo import catalog

    return [card.as_dict() if hasattr(card, "as_dict") else vars(card)
            for card in catalog.list_cards()] + [p.as_dict() for p in catalog.list_presets()]


__all__ = [
    "BatchResults",
    "Progress",
    "Separator",
    "StemsplitError",
    "TrackResult",
    "list_models",
    "separate",
    "separate_many",
]
