"""The Python API: `separate()`, `separate_many()`, `Separator`, `list_models()`.

The CLI calls only this. A `Separator` loads its model(s) once and separates any
number of tracks; `separate()` is the one-call convenience around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemsplit.batch import TrackResult, check_template, expand_inputs, output_paths, run_batch
from stemsplit.engine.runner import EngineSettings
from stemsplit.errors import StemsplitError, UsageError

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
    ensemble: str = "avg"
    weights: Sequence[dict[str, float]] | None = None
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
        self.bundles = self._load(download_progress)
        self.name = "+".join(b.name for b in self.bundles)
        self.plan = self._plan()
        self.runners: dict[int, Any] = {}

    def _load(self, download_progress) -> list:
        from stemsplit.zoo.loader import load_bundle

        names = list(self.models.names)
        if self.models.checkpoint is not None:
            return [
                load_bundle(
                    checkpoint=self.models.checkpoint,
                    config=self.models.config,
                    stems=self._needed_guess(),
                )
            ]
        bundles = []
        for name in names:
            if hasattr(name, "members"):  # a ready ModelBundle (tests, advanced use)
                bundles.append(name)
                continue
            bundles.append(
                load_bundle(
                    name=name,
                    stems=self._needed_guess(),
                    offline=self.models.offline,
                    model_dir=self.models.model_dir,
                    progress=download_progress,
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

    def _plan(self):
        from stemsplit.engine.pipeline import plan_stems

        if len(self.bundles) == 1:
            bundle = self.bundles[0]
            return plan_stems(
                bundle.sources,
                bundle.residual,
                self.stem_options.stems,
                self.stem_options.two_stems,
                self.stem_options.other_method,
            )
        stems: list[str] = []
        for bundle in self.bundles:
            for stem in bundle.sources:
                if stem not in stems:
                    stems.append(stem)
        if "other" in stems and not (self.stem_options.stems and
                                     set(self.stem_options.stems) & {"guitar", "piano"}):
            first = self.bundles[0].sources
            stems = [s for s in stems if s in first or s not in ("guitar", "piano")]
        return plan_stems(
            stems, None, self.stem_options.stems, self.stem_options.two_stems,
            self.stem_options.other_method,
        )

    def outputs_for(self, track: Path) -> dict[str, Path]:
        """The stem files `track` will produce."""
        return output_paths(track, self.name, self.plan.written, self.output)

    def separate_track(
        self, track: Path, on_progress: Callable[[float], None] | None = None
    ) -> tuple[dict[str, Path], float, dict[str, int]]:
        """Separate one file; returns stem paths, audio seconds and clip counts."""
        from stemsplit.engine.pipeline import TrackJob, run_track

        outputs = self.outputs_for(track)
        folder = next(iter(outputs.values())).parent
        job = TrackJob(
            input=track,
            outputs=outputs,
            spool_dir=folder,
            settings=self.engine,
            output_rate=self.output.samplerate,
            writer_options={
                "format": self.output.format,
                "bit_depth": self.output.bit_depth,
                "mp3_bitrate": self.output.mp3_bitrate,
                "clip": self.output.clip,
            },
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
    ) -> list[TrackResult]:
        """Separate every track of `inputs`; a bad file fails alone, the rest go on."""
        tracks = expand_inputs(inputs, recursive=recursive)
        return run_batch(self, tracks, skip_existing=skip_existing, progress=progress)


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
    ensemble: str = "avg",
    weights: Sequence[dict[str, float]] | None = None,
    model_dir: str | Path | None = None,
    offline: bool | None = None,
    recursive: bool = False,
    skip_existing: bool = True,
    overwrite: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 2,
    progress: Callable[[Progress], None] | None = None,
) -> list[TrackResult]:
    """Split files (or folders) into stems; returns one result per track."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    # Cheap checks before any model is loaded (or downloaded).
    check_template(filename)
    tracks = expand_inputs(inputs, recursive=recursive)
    names = [model] if isinstance(model, str) or hasattr(model, "members") else list(model)
    options = dict(
        models=ModelOptions(
            names=names,
            checkpoint=Path(checkpoint) if checkpoint else None,
            config=Path(config) if config else None,
            ensemble=ensemble,
            weights=weights,
            model_dir=Path(model_dir) if model_dir else None,
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
        ),
        stems=StemOptions(stems=stems, two_stems=two_stems, other_method=other_method),
        threads=threads,
    )
    skip = skip_existing and not overwrite
    if executor == "ray":
        from stemsplit.batch_ray import run_on_ray

        return run_on_ray(options, tracks, ray_address, ray_workers, skip, progress)
    if executor != "local":
        raise UsageError(f"unknown executor {executor!r}: use local or ray")
    return run_batch(Separator(**options), tracks, skip_existing=skip, progress=progress)


def separate_many(
        self,
        inputs: Sequence[str | Path],
        recursive: bool = False,
        skip_existing: bool = True,
        progress: Callable[[Progress], None] | None = None,
    ) -> list[TrackResult]:
        """Separate every track of `inputs`; a bad file fails alone, the rest go on."""
        tracks = expand_inputs(inputs, recursive=recursive)
        return run_batch(self, tracks, skip_existing=skip_existing, progress=progress)


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
    ensemble: str = "avg",
    weights: Sequence[dict[str, float]] | None = None,
    model_dir: str | Path | None = None,
    offline: bool | None = None,
    recursive: bool = False,
    skip_existing: bool = True,
    overwrite: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
    ray_workers: int = 2,
    progress: Callable[[Progress], None] | None = None,
) -> list[TrackResult]:
    """Split files (or folders) into stems; returns one result per track."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    # Cheap checks before any model is loaded (or downloaded).
    check_template(filename)
    tracks = expand_inputs(inputs, recursive=recursive)
    names = [model] if isinstance(model, str) or hasattr(model, "members") else list(model)
    separator = Separator(
        models=ModelOptions(
            names=names,
            checkpoint=Path(checkpoint) if checkpoint else None,
            config=Path(config) if config else None,
            ensemble=ensemble,
            weights=weights,
            model_dir=Path(model_dir) if model_dir else None,
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
            out=Path(out),
            filename=filename,
            format=format,
            bit_depth=bit_depth,
            mp3_bitrate=mp3_bitrate,
            clip=clip,
            samplerate=samplerate,
        ),
        stems=StemOptions(stems=stems, two_stems=two_stems, other_method=other_method),
        threads=threads,
    )
    return run_batch(
        separator, tracks, skip_existing=skip_existing and not overwrite, progress=progress
    )


def separate_many(paths: Sequence[str | Path], **options: Any) -> list[TrackResult]:
    """`separate` over many inputs (same options); per-track results."""
    return separate(list(paths), **options)


def list_models() -> list[dict[str, Any]]:
    """The zoo's model cards as plain dicts."""
    from stemsplit.zoo import catalog

    return [card.as_dict() if hasattr(card, "as_dict") else vars(card)
            for card in catalog.list_cards()]


__all__ = [
    "Progress",
    "Separator",
    "StemsplitError",
    "TrackResult",
    "list_models",
    "separate",
    "separate_many",
]
