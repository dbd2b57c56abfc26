"""What a run is asked to do, and what it reports: option, progress and result types.

A leaf module (it imports only `errors` and the format tables) shared by every layer.
Each option value is checked where it is defined, in the dataclass' `__post_init__`,
so the CLI and the Python API reject the same values with the same message, before
any model is downloaded, any audio decoded or torch imported.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stemsplit.audio.formats import (
    SLOTS,
    STEM_CODECS,
    STEM_FILE_FORMAT,
    check_clip,
    check_mp3_bitrate,
    is_stem_file,
    normalize_bit_depth,
    resolve_output,
)
from stemsplit.errors import UsageError

DEFAULT_MODEL = "htdemucs"
DEFAULT_TEMPLATE = "{reldir}{track}/{stem}.{ext}"
STEM_FILE_TEMPLATE = "{reldir}{track}.{ext}"  # -f stem.mp4: one file per track
# {Stem}: "Vocals", "No Vocals" (audio-separator, UVR); {n}: the track's number in the batch
TEMPLATE_FIELDS = frozenset({"track", "stem", "Stem", "ext", "model", "trackext", "reldir", "n"})
# `--naming`: the file names each peer writes, under OUT (not OUT/<model>); (stems, stem file)
NAMING_SCHEMES = {
    "demucs": ("{model}/{reldir}{track}/{stem}.{ext}", "{model}/{reldir}{track}.{ext}"),
    "audio-separator": ("{reldir}{track}_({Stem})_{model}.{ext}", "{reldir}{track}_{model}.{ext}"),
    "uvr": ("{reldir}{n}_{track}_({Stem}).{ext}", "{reldir}{n}_{track}.{ext}"),
    "msst": ("{reldir}{track}/{stem}.{ext}", "{reldir}{track}.{ext}"),
}
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
# `--ensemble`: per sample on the waveforms, or per STFT bin (`engine.spectral`).
WAVEFORM_ALGORITHMS = ("avg", "median", "min-mag", "max-mag")
SPECTRAL_ALGORITHMS = ("avg-spec", "max-spec", "min-spec")
ALGORITHMS = WAVEFORM_ALGORITHMS + SPECTRAL_ALGORITHMS
OTHER_METHODS = ("minus", "add")
EXECUTORS = ("local", "ray")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{name} must be a number, not {value!r}")
    return float(value)


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


@dataclass(frozen=True)
class EngineSettings:
    """Inference options shared by every model; None means "the model's recipe"."""

    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    segment_seconds: float | None = None
    overlap: float | None = None
    shifts: int = 0
    seed: int = 0
    tta: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise UsageError(f"unknown device {self.device!r}: use auto, cpu, cuda[:N] or mps")
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}"
            )
        if self.batch_size is not None:
            _count(self.batch_size, "--batch-size", 1)
        if self.segment_seconds is not None and _number(self.segment_seconds, "--segment") <= 0:
            raise UsageError(f"--segment must be positive, not {self.segment_seconds}")
        if self.overlap is not None and not 0 <= _number(self.overlap, "--overlap") < 1:
            raise UsageError(f"--overlap must be in [0, 1), not {self.overlap}")
        _count(self.shifts, "--shifts", 0)
        _count(self.seed, "--seed", 0)


@dataclass(frozen=True)
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
    stdout: bool = False  # `-o -`: one stem, streamed to stdout (wav, flac or raw)
    copy_tags: bool = True  # the input's tags and cover art into every output file
    naming: str | None = None  # a peer's file names (NAMING_SCHEMES) instead of --filename
    # `-f stem.mp4` (NI Stems): codec, and which stems fill the four tracks, their names
    # and colours ("slot=a+b,..." strings or mappings; see audio/stem_mp4.py)
    stem_codec: str = "aac"
    stem_map: Any = None
    stem_label: Any = None
    stem_color: Any = None
    # `-o URL` (object storage): files are staged under `out`, then uploaded here
    out_url: str | None = None

    def __post_init__(self) -> None:
        if self.stdout:
            check_not_stem_file(self.format)
        if self.stdout or self.format == "raw":
            _check_stream_output(self)
            return
        if is_stem_file(self.format):
            _check_stem_file(self)
        else:
            fmt, depth = resolve_output(self.format, self.bit_depth)
            object.__setattr__(self, "format", fmt.name)
            object.__setattr__(self, "bit_depth", depth)
            given = [flag for flag, value in (("--stem-codec", self.stem_codec != "aac"),
                     ("--stem-map", self.stem_map), ("--stem-label", self.stem_label),
                     ("--stem-color", self.stem_color)) if value]  # fmt: skip
            if given:
                raise UsageError(f"{', '.join(given)} shape(s) stem files: add -f stem.mp4")
        if self.format == "mp3":
            check_mp3_bitrate(self.mp3_bitrate)
        check_clip(self.clip)
        _apply_naming(self)
        check_template(self.filename, one_file=self.stem_file)
        rate = self.samplerate
        if rate not in ("input", "model") and (
            isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 768000
        ):
            raise UsageError(f"--samplerate must be input, model or 1000-768000 Hz, not {rate!r}")
        if self.report and not per_track_folder(self.filename):
            raise UsageError(
                "--report needs a folder per track: keep {track} in the folder part of "
                "--filename (e.g. {track}/{stem}.{ext})"
            )
        if self.reference is not None and not Path(self.reference).is_dir():
            raise UsageError(f"--reference {self.reference}: not a folder of reference stems")

    def record(self) -> dict[str, Any]:
        """The settings that decide the written files, as `stemsplit.json` records them
        (a rerun redoes a track when they differ). `copy_tags` is recorded only when off,
        so records from before tags were copied still match."""
        record: dict[str, Any] = {
            "format": self.format,
            "bit_depth": self.bit_depth,
            "mp3_bitrate": self.mp3_bitrate if self.format == "mp3" else None,
            "clip": self.clip,
            "samplerate": self.samplerate,
        }
        if not self.copy_tags:
            record["copy_tags"] = False
        if self.stem_file:
            record["stem_file"] = {"codec": self.stem_codec, "map": dict(self.stem_map),
                                   "labels": dict(self.stem_label),
                                   "colors": dict(self.stem_color)}  # fmt: skip
        return record

    @property
    def stem_file(self) -> bool:
        """Whether each track's stems go into one NI Stems file."""
        return self.format == STEM_FILE_FORMAT


def check_not_stem_file(format: str) -> None:
    """`-o -` streams one stem: a stem file (all of a track's stems) cannot be one."""
    if is_stem_file(format):
        raise UsageError("-f stem.mp4 writes a file per track, not a stream: not with -o -")


# -- stem files (`-f stem.mp4`): slot map, labels, colours, codec -----------------------

_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")

def parse_stem_map(value: str | Mapping[str, Any] | None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`drums=drums,other=other+guitar+piano` (or a mapping) -> ((slot, stems), ...)."""
    if value is None:
        return ()
    if isinstance(value, str):
        pairs = _pairs(value, "--stem-map")
        items: list[tuple[str, Any]] = [(slot, stems.split("+")) for slot, stems in pairs]
    elif isinstance(value, Mapping):
        items = [(str(k), [v] if isinstance(v, str) else list(v)) for k, v in value.items()]
    else:  # already parsed (a tuple of pairs)
        items = [(str(k), list(v)) for k, v in value]
    parsed = []
    for slot, stems in items:
        _check_slot(slot, "--stem-map")
        names = tuple(s.strip() for s in stems if s.strip())
        parsed.append((slot, names))
    return tuple(parsed)


def parse_slot_values(value: str | Mapping[str, str] | Any, flag: str
                      ) -> tuple[tuple[str, str], ...]:  # fmt: skip
    """`--stem-label other=Melody,vocals=Vox` / `--stem-color vocals=#FF0000`."""
    if not value:
        return ()
    if isinstance(value, str):
        pairs = _pairs(value, flag)
    elif isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = [(str(k), str(v)) for k, v in value]
    for slot, text in pairs:
        _check_slot(slot, flag)
        if flag == "--stem-color" and not _COLOR.match(text):
            raise UsageError(f"--stem-color {slot}={text}: use #RRGGBB, e.g. #56B4E9")
        if not text.strip():
            raise UsageError(f"{flag} {slot}= is empty")
    return tuple(pairs)


def _pairs(text: str, flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        slot, sep, rest = item.partition("=")
        if not sep:
            raise UsageError(f"{flag} {item!r}: use SLOT=VALUE, e.g. other=other+guitar+piano")
        pairs.append((slot.strip(), rest.strip()))
    return pairs


def _check_slot(slot: str, flag: str) -> None:
    if slot not in SLOTS:
        raise UsageError(f"{flag}: unknown slot {slot!r}: a stem file has {', '.join(SLOTS)}")


def check_stem_codec(codec: str, bit_depth: Any) -> None:
    """UsageError for a codec other than aac/alac, or a bit depth AAC has not."""
    if codec not in STEM_CODECS:
        raise UsageError(f"unknown --stem-codec {codec!r}: use aac or alac")
    if codec == "aac" and bit_depth is not None:
        raise UsageError(f"--bit-depth {bit_depth}: AAC is lossy and has none; "
                         "use --stem-codec alac for 16 or 24 bits")  # fmt: skip


def _check_stem_file(options: OutputOptions) -> None:
    """`-f stem.mp4`: the codec and its bit depth, the slot map, labels and colours."""
    depth = normalize_bit_depth(options.bit_depth)
    check_stem_codec(options.stem_codec, depth)
    if options.stem_codec == "alac":
        if depth not in (None, 16, 24):
            raise UsageError(f"--bit-depth {options.bit_depth}: ALAC holds 16 or 24 bits")
        depth = depth or 16
    if options.report:
        raise UsageError("--report reads stems as separate files: not with -f stem.mp4")
    set_field = object.__setattr__
    set_field(options, "format", STEM_FILE_FORMAT)
    set_field(options, "bit_depth", depth)
    set_field(options, "stem_map", parse_stem_map(options.stem_map))
    set_field(options, "stem_label", parse_slot_values(options.stem_label, "--stem-label"))
    set_field(options, "stem_color", parse_slot_values(options.stem_color, "--stem-color"))
    if options.filename == DEFAULT_TEMPLATE:
        set_field(options, "filename", STEM_FILE_TEMPLATE)


def _apply_naming(options: OutputOptions) -> None:
    """`--naming SCHEME`: the peer's template replaces --filename (which it contradicts)."""
    if options.naming is None:
        return
    if options.naming not in NAMING_SCHEMES:
        raise UsageError(f"unknown --naming {options.naming!r}: use one of "
                         f"{', '.join(NAMING_SCHEMES)}")  # fmt: skip
    stems, one_file = NAMING_SCHEMES[options.naming]
    template = one_file if options.stem_file else stems
    # Its own template too: `dataclasses.replace` (a plan staged for a bucket) runs this again.
    if options.filename not in (DEFAULT_TEMPLATE, STEM_FILE_TEMPLATE, template):
        raise UsageError(f"--naming {options.naming} and --filename contradict each other: "
                         "give one of them")  # fmt: skip
    object.__setattr__(options, "filename", template)


STREAM_FORMATS = ("wav", "flac", "raw")
RAW_INPUT_FORMATS = ("f32le", "s16le")


def _check_stream_output(options: OutputOptions) -> None:
    """`-o -` writes wav, flac or raw (f32le, stdout only); no report beside it."""
    fmt = str(options.format).lower()
    if fmt == "raw" and not options.stdout:
        raise UsageError("-f raw writes to stdout only: add -o -")
    if fmt not in STREAM_FORMATS:
        raise UsageError(f"-o - writes {', '.join(STREAM_FORMATS)}, not {options.format!r}")
    depth = options.bit_depth
    if fmt == "raw":
        if depth not in (None, "float32", "32f", "f32", "float"):
            raise UsageError("-f raw is float32 (f32le): --bit-depth does not apply")
        depth = "float32"
    else:
        depth = resolve_output(fmt, depth)[1]
        if fmt == "flac" and depth == "float32":
            raise UsageError("--bit-depth float32: FLAC holds 16 or 24 bits")
    object.__setattr__(options, "format", fmt)
    object.__setattr__(options, "bit_depth", depth)
    check_clip(options.clip)
    if options.report or options.reference is not None:
        raise UsageError("--report writes files beside the stems: not with -o -")
    rate = options.samplerate
    if rate not in ("input", "model") and (
        isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 768000
    ):
        raise UsageError(f"--samplerate must be input, model or 1000-768000 Hz, not {rate!r}")


def check_one_stem(stems: StemOptions) -> None:
    """`-o -` carries exactly one stem: `-s STEM`, or `--two-stems STEM --keep WHICH`."""
    if stems.stems is not None and len(stems.stems) == 1:
        return
    if stems.two_stems is not None and stems.keep is not None:
        return
    if stems.two_stems is not None:
        raise UsageError(f"-o - writes one stem: add --keep {stems.two_stems} or --keep "
                         f"no_{stems.two_stems} to --two-stems {stems.two_stems}")  # fmt: skip
    given = f" (-s {','.join(stems.stems)} names {len(stems.stems)})" if stems.stems else ""
    raise UsageError("-o - writes exactly one stem: choose it with -s STEM or --two-stems "
                     f"STEM --keep STEM|no_STEM{given}")  # fmt: skip


@dataclass(frozen=True)
class PipeInput:
    """How `stemsplit -` reads stdin: sniffed (WAV, FLAC, Ogg, MP3...) unless
    `input_format` names raw PCM, which then needs its rate and channel count."""

    input_format: str | None = None
    input_rate: int | None = None
    input_channels: int | None = None

    def __post_init__(self) -> None:
        if self.input_format is None:
            if self.input_rate is not None or self.input_channels is not None:
                raise UsageError("--input-rate and --input-channels describe raw input: "
                                 "add --input-format f32le|s16le")  # fmt: skip
            return
        if self.input_format not in RAW_INPUT_FORMATS:
            raise UsageError(f"--input-format must be f32le or s16le, not "
                             f"{self.input_format!r}")  # fmt: skip
        if self.input_rate is None or self.input_channels is None:
            raise UsageError(f"--input-format {self.input_format} needs --input-rate and "
                             "--input-channels")  # fmt: skip
        rate = self.input_rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 768000:
            raise UsageError(f"--input-rate must be 1000-768000 Hz, not {rate!r}")
        _count(self.input_channels, "--input-channels", 1)
        if self.input_channels > 64:
            raise UsageError(f"--input-channels must be at most 64, not {self.input_channels}")

    @property
    def given(self) -> bool:
        return self.input_format is not None


def check_template(template: str, one_file: bool = False) -> None:
    """Unknown `{fields}`, templates without `{stem}` and paths that leave the output
    folder (`..`, absolute) are usage errors; `one_file` (a stem file per track) wants
    no `{stem}`."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as err:
        raise UsageError(f"--filename {template!r}: {err}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise UsageError(
            f"--filename: unknown field(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    named = fields & {"stem", "Stem"}
    if one_file and named:
        raise UsageError("-f stem.mp4 writes one file per track: drop {stem} from --filename")
    if not one_file and not named:
        raise UsageError("--filename must contain {stem}, or every stem would overwrite the last")
    if "." not in re.sub(r"\{[^}]*\}", "", Path(template).name):  # `{stem}`: no extension
        raise UsageError(f"--filename {template!r} gives files no extension: end it with "
                         ".{ext} (e.g. {stem}.{ext})")  # fmt: skip
    path = Path(template)
    if path.is_absolute() or template.startswith(("/", "\\", "~")) or ".." in path.parts:
        raise UsageError(
            f"--filename {template!r} leaves the output folder: use a relative path "
            "without '..' (choose the folder with -o)"
        )


def per_track_folder(template: str) -> bool:
    """Whether `--filename` gives each track its own folder (metadata and reports go there)."""
    folder = Path(template).parent.as_posix()
    return any(f == "track" for _, f, _, _ in string.Formatter().parse(folder))


@dataclass(frozen=True)
class StemOptions:
    """Which stems are written."""

    stems: tuple[str, ...] | None = None
    two_stems: str | None = None
    other_method: str = "minus"
    keep: str | None = None  # of --two-stems X: only X, or only no_X

    def written(self, planned: tuple[str, ...]) -> tuple[str, ...]:
        """The planned written stems narrowed by `keep`."""
        return (self.keep,) if self.keep is not None else planned

    def __post_init__(self) -> None:
        if self.stems is not None:
            stems = tuple(dict.fromkeys(str(s).strip() for s in self.stems if str(s).strip()))
            object.__setattr__(self, "stems", stems or None)
        if self.other_method not in OTHER_METHODS:
            raise UsageError(
                f"--other-method must be 'minus' or 'add', not {self.other_method!r}"
            )
        if self.two_stems is not None and self.stems:
            raise UsageError(
                f"--two-stems {self.two_stems} and -s/--stems {','.join(self.stems)} "
                "contradict each other: give one of them"
            )
        if self.keep is not None:
            if self.two_stems is None:
                raise UsageError("--keep chooses one of --two-stems STEM's pair: add --two-stems")
            pair = (self.two_stems, f"no_{self.two_stems}")
            if self.keep not in pair:
                raise UsageError(f"--keep must be {pair[0]} or {pair[1]}, not {self.keep!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One model as asked for: a zoo name (or preset), or a local checkpoint file.

    `model_type` names the architecture of a checkpoint whose config does not say it
    (MSST's `--model_type` names).
    """

    name: str | None = None
    checkpoint: Path | None = None
    config: Path | None = None
    model_type: str | None = None
    bundle: Any = field(default=None, compare=False)  # a ready ModelBundle (Python use)

    def __post_init__(self) -> None:
        given = [v for v in (self.name, self.checkpoint, self.bundle) if v is not None]
        if len(given) != 1:
            raise UsageError("a model is a zoo name, a --checkpoint file or a ready bundle")
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint).expanduser().absolute())
        if self.config is not None:
            object.__setattr__(self, "config", Path(self.config).expanduser().absolute())
        if self.name is not None and self.config is not None:
            raise UsageError(
                f"--config {self.config} belongs to a --checkpoint, not to the zoo model "
                f"{self.name!r} (zoo models bring their own config)"
            )


# What `--require-licence` may ask of the weights (zoo.catalog.LICENCE_USES says which
# licences meet which).
LICENCE_REQUIREMENTS = ("any", "open", "commercial")


def check_algorithm(algorithm: str) -> None:
    """UsageError for an unknown `--ensemble` value."""
    if algorithm not in ALGORITHMS:
        raise UsageError(
            f"unknown ensemble algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}"
        )


@dataclass(frozen=True)
class ModelOptions:
    """Which model(s), how they combine, and where their files come from."""

    models: tuple[ModelSpec, ...] = (ModelSpec(DEFAULT_MODEL),)
    ensemble: str | None = None  # None: the preset's algorithm, else "avg"
    weights: Sequence[Any] | Mapping[str, Any] | None = None  # per model, or keyed by name
    model_dir: Path | None = None
    offline: bool | None = None
    # What the zoo models' weights' licence must allow: any, open or commercial (None:
    # STEMSPLIT_REQUIRE_LICENCE, else any); checked on the plan, before any download.
    require_licence: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise UsageError("no model given")
        if self.require_licence is None:
            import os

            value = os.environ.get("STEMSPLIT_REQUIRE_LICENCE", "").strip() or "any"
            object.__setattr__(self, "require_licence", value)
        if self.require_licence not in LICENCE_REQUIREMENTS:
            raise UsageError(f"--require-licence {self.require_licence!r}: use one of "
                             f"{', '.join(LICENCE_REQUIREMENTS)}")  # fmt: skip
        if self.ensemble is not None:
            check_algorithm(self.ensemble)


@dataclass(frozen=True)
class BatchOptions:
    """How many inputs are walked and run."""

    recursive: bool = False
    skip_existing: bool = True
    jobs: int = 1
    executor: str = "local"
    ray_address: str | None = None
    ray_workers: int = 2
    threads: int | None = None
    cpus_per_worker: float = 1.0  # Ray resources of each worker (GPUs may be fractional)
    gpus_per_worker: float = 0.0
    retries: int = 2  # times a track lost with its Ray worker runs again
    shard: str | None = None  # "K/N": only the tracks whose input hashes to K mod N

    @property
    def shard_of(self) -> tuple[int, int] | None:
        """`--shard K/N` as (K, N)."""
        if self.shard is None:
            return None
        index, _, count = self.shard.partition("/")
        return int(index), int(count)

    def __post_init__(self) -> None:
        _count(self.jobs, "--jobs", 0)
        if self.executor not in EXECUTORS:
            raise UsageError(f"unknown executor {self.executor!r}: use local or ray")
        _count(self.ray_workers, "--ray-workers", 1)
        _count(self.retries, "--retries", 0)
        if self.shard is not None:
            index, _, count = str(self.shard).partition("/")
            if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
                raise UsageError(f"--shard must be K/N with 0 <= K < N (e.g. "
                                 f"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT), not "
                                 f"{self.shard!r}")  # fmt: skip
        if _number(self.cpus_per_worker, "--cpus-per-worker") <= 0:
            raise UsageError(f"--cpus-per-worker must be positive, not {self.cpus_per_worker}")
        if _number(self.gpus_per_worker, "--gpus-per-worker") < 0:
            raise UsageError(f"--gpus-per-worker must be >= 0, not {self.gpus_per_worker}")
        if self.threads is not None:
            _count(self.threads, "--threads", 1)


@dataclass(frozen=True)
class Progress:
    """A progress event: `fraction` of track `index` (of `count`) is done."""

    index: int
    count: int
    track: Path
    fraction: float
    stage: str = "separating"


@dataclass
class TrackResult:
    """How one track ended."""

    input: Path
    status: str  # "done" | "skipped" | "failed"
    stems: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    audio_seconds: float = 0.0
    clipped_samples: dict[str, int] = field(default_factory=dict)
    report: Path | None = None
    reason: str | None = None  # why a track was redone, or skipped
    retries: int = 0  # runs again after its worker was lost (Ray)

    @property
    def speed(self) -> float | None:
        """Speed in times real time: audio seconds per wall-clock second (higher is faster)."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "status": self.status,
            "stems": {k: str(v) for k, v in self.stems.items()},
            "error": self.error,
            "reason": self.reason,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "audio_seconds": round(self.audio_seconds, 3),
            "speed": self.speed and round(self.speed, 3),
            "clipped_samples": self.clipped_samples,
            "report": str(self.report) if self.report else None,
        }
