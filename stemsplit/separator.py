"""A `Separator` runs one `RunPlan`: it loads the plan's models once (when a track first
needs them), builds each network's runner once, and separates one track at a time.

Zoo models are fetched and loaded on first use, so a rerun whose tracks are all done
never downloads or loads them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stemsplit.errors import ModelError
from stemsplit.plan import PlannedModel, RunPlan

if TYPE_CHECKING:
    from stemsplit.engine.bundle import Runners
    from stemsplit.engine.multi import TrackBatcher
    from stemsplit.engine.pipeline import PreparedInput, Separation, TrackOutcome
    from stemsplit.zoo.loader import ModelBundle

log = logging.getLogger(__name__)


class Separator:
    """Models loaded once, applied to many tracks, as `plan` says."""

    def __init__(
        self,
        plan: RunPlan,
        *,
        model_dir: Path | None = None,
        offline: bool | None = None,
        download_progress: Callable[..., Any] | None = None,
    ) -> None:
        self.plan = plan
        self._model_dir = model_dir
        self._offline = offline
        self._download_progress = download_progress
        self._bundles: list[ModelBundle] | None = None
        self._runners: Runners = {}
        self._identity: list[dict[str, Any]] | None = None

    @property
    def bundles(self) -> list[ModelBundle]:
        """The loaded models (fetched on first use), each network's runner built once."""
        if self._bundles is None:
            from stemsplit.engine.bundle import apply_engine_settings

            self._bundles = [self._load(model) for model in self.plan.models]
            apply_engine_settings(self._bundles, self.plan.engine)
            self._build_runners(self._bundles)
        return self._bundles

    def _load(self, model: PlannedModel) -> ModelBundle:
        if model.bundle is not None:
            return model.bundle
        from stemsplit.errors import DownloadError
        from stemsplit.zoo.loader import load_bundle

        try:
            bundle = load_bundle(
                name=model.name,
                stems=list(model.needs) if model.needs else None,
                offline=self._offline,
                model_dir=self._model_dir,
                progress=self._download_progress,
            )
        except DownloadError as err:  # --recipe forbids --checkpoint: name the recipe's way
            if self.plan.recipe is None:
                raise
            raise DownloadError(str(err).replace(
                "pass --checkpoint FILE", "give the recipe's step `checkpoint = \"FILE\"`"
            )) from err
        if bundle.residual != model.residual:
            raise ModelError(
                f"model {model.name!r}: its config names a residual stem {bundle.residual!r} "
                f"the card does not; add `residual = \"{bundle.residual}\"` to the card"
            )
        return bundle

    def _build_runners(self, bundles: list[Any]) -> None:
        """One runner per network for the whole run (device and precision resolved once)."""
        import torch

        from stemsplit.engine.bundle import member_settings
        from stemsplit.engine.runner import ModelRunner, effective_recipe

        engine = self.plan.engine
        for bundle in bundles:
            for member in bundle.members:
                if id(member) not in self._runners:
                    runner = ModelRunner(member, engine.device, engine.precision)
                    self._runners[id(member)] = runner
                    recipe, segment = effective_recipe(member, member_settings(member, engine))
                    log.info(
                        "%s: %s on %s, %s, %d torch threads; chunks of %.2f s, overlap %.2f, "
                        "%s window, batch %d", bundle.name, type(member).__name__,
                        runner.device, runner.precision, torch.get_num_threads(),
                        segment / member.samplerate, recipe.overlap, recipe.window,
                        recipe.batch_size,
                    )  # fmt: skip

    def separation(self, runners: Runners | None = None) -> Separation:
        """What the engine's entries take: the plan's models loaded, their layout and
        stems, settings, runners (the pooled ones of a track batcher where given) and
        the output rate."""
        from stemsplit.engine.pipeline import Separation

        return Separation(self.bundles, self.plan.layout, self.plan.stems, self.plan.engine,
                          self._runners if runners is None else runners,
                          self.plan.output.samplerate)  # fmt: skip

    def model_identity(self) -> list[dict[str, Any]]:
        """Each model's name and the sha256 of its files, as `stemsplit.json` records
        them (zoo files by their card or first-download record, local files hashed)."""
        if self._identity is None:
            self._identity = [_identity(model, self._model_dir) for model in self.plan.models]
        return self._identity

    def describe(self) -> dict[str, Any]:
        """The plan's record with the models' checksums: what a rerun compares."""
        from stemsplit.version import __version__

        record = self.plan.describe()
        return {"stemsplit": __version__, **record, "model_files": self.model_identity()}

    def prepare(self, track: Path, spool_dir: Path) -> PreparedInput:
        """Decode `track` into spool files at the models' rates (a batch does this ahead;
        the CLI may have done it during start-up: `stemsplit.startup`)."""
        from stemsplit import startup
        from stemsplit.engine.pipeline import model_channels, prepare_input

        recipe = self.plan.recipe  # a recipe decodes the input only for its first steps
        rates = recipe.mixture_rates if recipe else [m.samplerate for m in self.plan.models]
        channels = model_channels(self.bundles)
        early = startup.take(track, rates, channels)
        return early if early is not None else prepare_input(track, rates, spool_dir, channels)

    def track_batcher(self) -> TrackBatcher | None:
        """An `engine.multi.TrackBatcher` pooling the chunks of several tracks into each
        forward pass (`--batch-size` chunks), or None where tracks run one at a time:
        a recipe (chained steps), a network that chunks the track itself (UVR),
        batches of one chunk, no `--batch-size` given, or `--precision int8`
        (activation scales per batch)."""
        if self.plan.recipe is not None or self.plan.output.stdout:
            return None
        from stemsplit.engine.multi import TrackBatcher

        return TrackBatcher.for_models(self.bundles, self.plan.engine, self._runners)

    def separate_track(
        self,
        track: Path,
        outputs: dict[str, Path],
        on_progress: Callable[[float], None] | None = None,
        *,
        prepared: PreparedInput | None = None,
        writer_factory: Callable[..., Any] | None = None,
        spool_dir: Path | None = None,
        batcher: TrackBatcher | None = None,
    ) -> TrackOutcome:
        """Separate one file into `outputs` (stem -> path); returns the TrackOutcome.
        With `batcher` (a `track_batcher()`), its chunks share forward passes with the
        other tracks in flight."""
        from stemsplit import startup
        from stemsplit.engine.pipeline import TrackJob, run_track

        if prepared is None and startup.pending():  # `-o -` and --jobs 0 decode here
            prepared = self.prepare(track, spool_dir or next(iter(outputs.values())).parent)
        output = self.plan.output
        job = TrackJob(
            input=track,
            outputs=outputs,
            spool_dir=spool_dir or next(iter(outputs.values())).parent,
            writer_options={
                "format": output.format,
                "bit_depth": output.bit_depth,
                "mp3_bitrate": output.mp3_bitrate,
                "clip": output.clip,
            },
            prepared=prepared,
            writer_factory=writer_factory,
        )
        if not output.stdout:
            job.writer_factory, job.stem_options = _file_writers(track, outputs, output,
                                                                 writer_factory)  # fmt: skip
        if self.plan.recipe is not None:  # steps chained on this track (engine/chain.py)
            from stemsplit.engine.chain import run_chain

            return run_chain(job, self.separation(), self.plan.recipe, on_progress)
        runners = batcher.runners if batcher is not None else None
        return run_track(job, self.separation(runners), on_progress)


    # -- arrays and live streams (numpy in, numpy out) ----------------------------------
    def _check_plain(self) -> None:
        if getattr(self.plan, "recipe", None) is not None:
            from stemsplit.errors import UsageError

            raise UsageError("recipes (chained separations) run on files only, not on arrays "
                             "or streams")  # fmt: skip

    def separate_array(self, audio: Any, samplerate: int,
                       on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """`{stem: float32 array}` for `audio` (numpy array or torch tensor, `(channels,
        samples)` or `(samples,)`), each of the input's shape: file mode's numbers (the
        same resampling, statistics and chunks as a file holding these samples)."""
        import numpy as np

        from stemsplit.engine.pipeline import array_stems

        self._check_plain()
        array, restore = _as_channels_first(audio, samplerate)
        written = self.plan.stems.written
        if array.shape[1] == 0:
            return {stem: restore(np.zeros((array.shape[0], 0), np.float32)) for stem in written}
        parts: dict[str, list[Any]] = {stem: [] for stem in written}
        for named in array_stems(array, samplerate, self.separation(), on_progress):
            for stem, block in named.items():
                parts[stem].append(block)
        return {stem: restore(np.concatenate(blocks, axis=-1)) for stem, blocks in parts.items()}

    def stream(self, blocks: Any, samplerate: int, *, keep_shape: bool = True) -> Any:
        """Live separation: a generator of `{stem: block}` for an iterable of blocks
        (`(channels, n)` arrays or tensors, any sizes), each yielded as soon as it is
        final. Reads a block only when the next chunk needs it, holds a few segments,
        however long the stream; Demucs-style track statistics come from a running
        window (`engine.live`, docs/pipes.md), so the numbers differ slightly from
        `separate_array` for such models. Blocks keep the input's channel layout
        (`keep_shape=False`: the models' channels, as stem files have)."""
        from stemsplit.engine.pipeline import live_stems

        self._check_plain()
        restore_box: list[Any] = []

        def inputs() -> Any:
            for block in blocks:
                array, restore = _as_channels_first(block, samplerate)
                if not restore_box and keep_shape:
                    restore_box.append(restore)
                yield array

        for named in live_stems(inputs(), samplerate, self.separation()):
            restore = restore_box[0] if restore_box else (lambda a: a)
            yield {stem: restore(block) for stem, block in named.items()}


def _file_writers(track: Path, outputs: dict[str, Path], output: Any,
                  writer_factory: Callable[..., Any] | None
                  ) -> tuple[Callable[..., Any] | None, dict[str, dict[str, Any]]]:  # fmt: skip
    """How one track's files are written: each stem by `writer_factory` with the input's
    tags titled for it, or every stem into one NI Stems file (`audio.stem_mp4`)."""
    from stemsplit.audio.tags import read_tags

    tags = read_tags(track) if output.copy_tags else None
    if output.stem_file:
        from stemsplit.audio.stem_mp4 import resolve_slots, writer_factory_for

        slots = resolve_slots(list(outputs), output.stem_map, output.stem_label,
                              output.stem_color)  # fmt: skip
        return writer_factory_for(track, outputs, slots, output.stem_codec, output.bit_depth,
                                  output.clip, tags)  # fmt: skip
    if not tags:
        return writer_factory, {}
    from stemsplit.layout import stem_title

    return writer_factory, {stem: {"tags": tags.for_stem(stem_title(stem))} for stem in outputs}


def _as_channels_first(audio: Any, samplerate: int) -> tuple[Any, Callable[[Any], Any]]:
    """A float32 `(channels, n)` numpy array, and how to give a stem the input's shape:
    `(n,)` and mono in -> the stems' channel mean out; more channels than the model's
    are downmixed (the stems keep the model's channels)."""
    import numpy as np

    from stemsplit.errors import UsageError

    if isinstance(samplerate, bool) or not isinstance(samplerate, int) or samplerate <= 0:
        raise UsageError(f"samplerate must be a positive whole number, not {samplerate!r}")
    if hasattr(audio, "detach"):  # a torch tensor
        audio = audio.detach().cpu().float().numpy()
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        return array[None], lambda stem: np.ascontiguousarray(stem.mean(axis=0), np.float32)
    if array.ndim != 2:
        raise UsageError(f"audio must be (channels, samples) or (samples,), not {array.shape}")
    if array.shape[0] > 64 and array.shape[1] <= 64:
        raise UsageError(f"audio of shape {array.shape} looks like (samples, channels): "
                         "pass (channels, samples) (e.g. audio.T)")  # fmt: skip
    if array.shape[0] == 1:
        return array, lambda stem: np.ascontiguousarray(stem.mean(axis=0, keepdims=True),
                                                        np.float32)  # fmt: skip
    return array, lambda stem: np.ascontiguousarray(stem, np.float32)


def _identity(model: Any, model_dir: Path | None) -> dict[str, Any]:
    spec = model.spec
    if spec.checkpoint is not None:
        files = [spec.checkpoint, *([spec.config] if spec.config else [])]
        from stemsplit.zoo.local import file_sha256  # hashed once per run (the label did)

        return {"name": model.name, "files": {p.name: file_sha256(p) for p in files}}
    if spec.bundle is not None:
        return {"name": model.name, "files": {}}
    from stemsplit.zoo import catalog, fetch

    card = catalog.get_card(model.name)
    recorded = fetch.recorded_hashes(model_dir)
    hashes = {f.name: fetch.expected_hash(f, recorded)[0] for f in card.files}
    return {"name": model.name, "files": hashes}
