"""The listening report: one self-contained HTML page per track to audition and compare stems.

`write_report` analyses each stem in blocks (never the whole track at once): a peak
envelope for the waveform (embedded as JSON) and a log-frequency magnitude spectrogram
(written beside the stems as a PNG, drawn with numpy + Pillow). The page inlines its CSS
and JS (`report_assets/`), references the audio relatively so it works from `file://`,
and plays every track from one master clock. `write_index` links many reports together.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from stemsplit.atomic import write_atomic
from stemsplit.errors import InputError, OutputError, StemsplitError, UsageError
from stemsplit.layout import METADATA_NAME
from stemsplit.stem_folders import MIXTURE, split_mixture, stems_in

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aiff", ".aif"})
REPORT_NAME = "report.html"

PEAK_BUCKETS = 1200  # waveform resolution: about one bucket per screen pixel
SPEC_COLUMNS = 1024  # spectrogram image width (fewer for very short tracks)
SPEC_ROWS = 256  # log-frequency rows, from F_LOW_HZ to Nyquist
N_FFT = 2048
F_LOW_HZ = 30.0
DYNAMIC_RANGE_DB = 80.0

# Anchor colours of matplotlib's "magma" (dark purple -> orange -> pale yellow), 9 steps.
_MAGMA = np.array(
    [
        (0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
        (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191),
    ],
    dtype=np.float64,
)


@dataclass
class TrackAnalysis:
    """What the page shows about one audio file, computed in one streaming pass."""

    samplerate: int
    frames: int
    peaks: np.ndarray  # (2, buckets): per-bucket min and max over channels
    power: np.ndarray  # (SPEC_ROWS, columns): mean power per column, low frequency first

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def write_report(
    track_dir: Path,
    stems: dict[str, Path],
    *,
    mixture: Path | None = None,
    metadata: dict | None = None,
    references: dict[str, Path] | None = None,
    scores: dict[str, dict[str, float | None]] | None = None,
) -> Path:
    """Write `track_dir/report.html` (+ one `<name>.spectrogram.png` per track); return its path.

    `metadata` is shown as given (conventional keys, as in `stemsplit.json`: `models`,
    `settings`, `speed`, `elapsed_seconds`); SDR per stem is added for the stems
    that have a file in `references`, and `scores` (`{stem: {metric: value}}`, as
    `stemsplit eval --json` names them) beside it. Audio is referenced by relative URL,
    not copied.
    """
    track_dir = Path(track_dir)
    if not stems:
        raise StemsplitError(f"no stems to report in {track_dir}: pass at least one stem file")
    image = require_pillow()
    track_dir.mkdir(parents=True, exist_ok=True)
    entries: list[tuple[str, str, Path]] = []  # (name, kind, path)
    if mixture is not None:
        entries.append((MIXTURE, "mixture", _mixture_beside(track_dir, Path(mixture))))
    entries += [(name, "stem", Path(path)) for name, path in stems.items()]

    analyses = [analyse(path) for _, _, path in entries]
    loudest = max((float(a.power.max()) for a in analyses if a.power.size), default=0.0)
    sdrs = _sdrs(stems, references or {})
    tracks = []
    for (name, kind, path), analysis in zip(entries, analyses, strict=True):
        png = track_dir / f"{name}.spectrogram.png"
        _write_png(image, spectrogram_rgb(analysis.power, loudest), png)
        tracks.append({
            "name": name,
            "kind": kind,
            "src": _relative_url(path, track_dir),
            "spectrogram": _relative_url(png, track_dir),
            "duration": analysis.duration,
            "frames": analysis.frames,
            "samplerate": analysis.samplerate,
            "peaks": np.round(analysis.peaks, 4).tolist(),
            "sdr": sdrs.get(name),
            "scores": (scores or {}).get(name),
        })
    data = {
        "title": track_dir.name,
        "duration": max(a.duration for a in analyses),
        "metadata": _readable(metadata or {}),
        "tracks": tracks,
    }
    return _write_text(track_dir / REPORT_NAME, _render("page.html", track_dir.name, data))


def _readable(metadata: dict) -> dict:
    """A recipe's record shown as its name and one row per step (`settings.chain` holds
    the same lines, which a rerun compares)."""
    recipe = metadata.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("steps"), list):
        return metadata
    shown = {k: v for k, v in metadata.items() if k != "recipe"}
    shown["recipe"] = str(recipe.get("name", ""))
    for step in recipe["steps"]:
        if isinstance(step, dict):
            kept = ", ".join(f"{k} as {v}" if k != v else k for k, v in step.get("keep", {}).items())
            fed = ", ".join(f"{k} to {'+'.join(v)}" for k, v in step.get("feeds", {}).items())
            shown[f"step {step.get('name')}"] = (
                f"{'+'.join(step.get('models', []))} on {step.get('input')} -> "
                f"{'; '.join(x for x in (kept, fed) if x)}")  # fmt: skip
    residual = recipe.get("residual")
    if isinstance(residual, dict):
        shown[f"step {residual.get('name')}"] = "mixture - " + " - ".join(residual.get("of", []))
    return shown


def write_index(
    root: Path, reports: list[Path], failed: list[tuple[Path, str]] | None = None
) -> Path:
    """Write `root/index.html` linking every report (relatively) and listing the
    tracks that failed; return its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for report in sorted(Path(r) for r in reports):
        track = report.parent
        meta = read_metadata(track)
        models = meta.get("models") or meta.get("model") or track.parent.name
        rows.append({
            "track": _relative_name(track, root),
            "href": _relative_url(report, root),
            "models": models if isinstance(models, str) else ", ".join(map(str, models)),
            "speed": meta.get("speed"),
        })
    data = {"title": root.name, "reports": rows,
            "failed": [{"input": str(path), "error": error} for path, error in failed or []]}
    return _write_text(root / "index.html", _render("index.html", root.name, data))


def _relative_name(track: Path, root: Path) -> str:
    """A track folder's path below the index (`A/01 Intro`): two albums' `01 Intro`
    stay apart."""
    try:
        return Path(os.path.relpath(track.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive
        return track.name


def report_folder(
    folder: Path, *, mixture: Path | None = None, reference: Path | None = None,
    metrics: list[str] | None = None,
) -> tuple[list[Path], Path | None]:
    """Reports for stems already written: `(reports, index)`, the index None for one track.

    `folder` is a track folder (stems inside) or a model folder (track folders inside).
    `mixture` is the mix's file (one track) or a folder of `<track>.<ext>` files;
    `reference` holds `<stem>.<ext>` (one track) or `<track>/<stem>.<ext>` (MUSDB layout).
    `metrics` (names as `stemsplit eval --metrics` takes them) are scored against
    `reference` as eval scores them and shown per stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}; give a track folder or a model folder")
    if metrics is not None:
        from stemsplit.evaluate import check_metrics

        check_metrics(metrics)  # before anything is read or written
        if reference is None:
            raise UsageError("--metrics scores the stems against references: add --reference DIR")
    require_pillow()
    if mixture is not None and not Path(mixture).exists():
        raise InputError(f"mixture not found: {mixture}")
    if reference is not None and not Path(reference).is_dir():
        raise InputError(f"reference folder not found: {reference}")
    stems, own_mixture = find_stems(folder)
    if stems:
        check_stem_folder(folder, stems)  # before anything is written into it
        if mixture is not None and Path(mixture).is_dir():
            mixture = _audio_named(Path(mixture), folder.name)
        return [_report_track(folder, stems, mixture or own_mixture, reference, metrics)], None
    tracks = [d for d in sorted(folder.iterdir()) if d.is_dir() and find_stems(d)[0]]
    tracks = [d for d in tracks if _is_stem_folder(d, find_stems(d)[0])]
    if not tracks:
        raise InputError(f"no stems in {folder} or its sub-folders: give a folder of stem files")
    if mixture is not None and not Path(mixture).is_dir():
        raise UsageError("--mixture must be a folder of <track>.<ext> files for a model folder")
    reports = []
    for track in tracks:
        stems, own_mixture = find_stems(track)
        track_mixture = _audio_named(Path(mixture), track.name) if mixture else own_mixture
        track_reference = Path(reference) / track.name if reference else None
        reports.append(_report_track(track, stems, track_mixture, track_reference, metrics))
    return reports, write_index(folder, reports)


def _is_stem_folder(folder: Path, stems: dict[str, Path]) -> bool:
    """A folder of stems: stemsplit's record is there, or every audio file is named after
    a stem some model makes (another tool's output); a folder of songs is neither."""
    if (folder / METADATA_NAME).is_file() or any(folder.glob(f".*.{METADATA_NAME}")):
        return True
    return all(name.lower() in known_stem_names() for name in stems)


def check_stem_folder(folder: Path, stems: dict[str, Path]) -> None:
    """UsageError for a folder that holds songs, not stems (`stemsplit report ~/Music`
    would treat each song as a stem and write a page and images among them)."""
    if not _is_stem_folder(folder, stems):
        names = ", ".join(p.name for p in list(stems.values())[:3])
        raise UsageError(
            f"{folder} is not a folder of stems: no {METADATA_NAME} and its files ({names}"
            f"{', ...' if len(stems) > 3 else ''}) are not named after stems; give a folder "
            "stemsplit wrote (OUT/<model>/<track>) or one of <stem>.<ext> files"
        )


def known_stem_names() -> frozenset[str]:
    """Every stem a zoo model makes (its sources, residual and no_<source>), lowercased."""
    from stemsplit.zoo.catalog import list_cards

    names = {MIXTURE, "instrumental", "accompaniment"}
    for card in list_cards():
        for stem in (*card.sources, *([card.residual] if card.residual else [])):
            names |= {stem.lower(), f"no_{stem.lower()}"}
    return frozenset(names)


def find_stems(track_dir: Path) -> tuple[dict[str, Path], Path | None]:
    """The stems in a track folder (audio files by name) and its `mixture.*`, if any."""
    return split_mixture(stems_in(Path(track_dir)))


def read_metadata(track_dir: Path) -> dict[str, Any]:
    """The separation's `stemsplit.json` beside the stems, or {} when there is none."""
    path = Path(track_dir) / METADATA_NAME
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable %s: %s", path, err)
        return {}
    return loaded if isinstance(loaded, dict) else {}


def analyse(path: Path) -> TrackAnalysis:
    """Peak envelope and log-frequency power of `path`, reading it in blocks."""
    from stemsplit.audio.reader import probe, read_blocks

    info = probe(path)
    samplerate = info.samplerate
    expected = info.frames or _count_frames(path)  # estimate for compressed formats
    columns = max(1, min(SPEC_COLUMNS, expected // (N_FFT // 4)))
    hop = max(N_FFT // 4, expected // (columns * 4))  # >= 4 FFT frames per column
    bands = _band_matrix(samplerate)
    power = np.zeros((columns, SPEC_ROWS))
    counts = np.zeros(columns)
    buckets = max(1, min(PEAK_BUCKETS, expected))
    low = np.full(buckets, np.inf)
    high = np.full(buckets, -np.inf)
    window = np.hanning(N_FFT).astype(np.float32)
    # Centred frames (frame k is centred on sample k * hop): half a frame of zeros each side.
    pending = np.zeros(N_FFT // 2, dtype=np.float32)  # mono samples not yet fully used
    pending_start = -(N_FFT // 2)  # absolute frame index of pending[0]
    frames = 0
    for block in itertools.chain(read_blocks(path, channels=2), [None]):
        if block is None:  # end of file: the closing half frame of zeros
            mono = np.zeros(N_FFT // 2, dtype=np.float32)
        else:
            _add_peaks(block, frames, expected, low, high)
            frames += block.shape[1]
            mono = block.mean(axis=0)
        pending = np.concatenate([pending, mono])
        usable = (len(pending) - N_FFT) // hop + 1 if len(pending) >= N_FFT else 0
        if usable:
            _add_spectra(pending, pending_start, usable, hop, window, bands, expected,
                         power, counts)
            pending = pending[usable * hop:]
            pending_start += usable * hop
    power = _fill_empty(power, counts).T
    used = np.isfinite(low)
    peaks = np.stack([low[used], high[used]]) if used.any() else np.zeros((2, 0))
    return TrackAnalysis(samplerate, frames, peaks.astype(np.float32), power)


def spectrogram_rgb(power: np.ndarray, reference: float) -> np.ndarray:
    """Colour image `(rows, columns, 3)` uint8, high frequencies on top; dB below `reference`."""
    floor = 10 * math.log10(max(reference, 1e-20)) - DYNAMIC_RANGE_DB
    decibels = 10 * np.log10(np.maximum(power, 1e-20))
    level = np.clip((decibels - floor) / DYNAMIC_RANGE_DB, 0.0, 1.0)[::-1]
    if level.shape[1] == 0:
        level = np.zeros((SPEC_ROWS, 1))
    return magma(level)


def magma(level: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 by interpolating the magma anchors."""
    stops = np.linspace(0.0, 1.0, len(_MAGMA))
    channels = [np.interp(level, stops, _MAGMA[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def signal_to_distortion(reference: Path, estimate: Path) -> float:
    """`stemsplit.metrics.usdr` of the two files, summed block by block (never whole tracks)."""
    from stemsplit.audio.reader import probe, read_blocks
    from stemsplit.metrics import USDR_EPS

    rate = probe(estimate).samplerate  # the reference is resampled to the stem's rate
    signal = error = 0.0
    pairs = zip(read_blocks(reference, samplerate=rate), read_blocks(estimate), strict=False)
    for ref_block, est_block in pairs:
        n = min(ref_block.shape[1], est_block.shape[1])
        ref64 = ref_block[:, :n].astype(np.float64)
        signal += float(np.sum(ref64**2))
        error += float(np.sum((ref64 - est_block[:, :n]) ** 2))
    return 10 * math.log10((signal + USDR_EPS) / (error + USDR_EPS))


# -- helpers ------------------------------------------------------------------------------


def _add_spectra(
    samples: np.ndarray, start: int, count: int, hop: int, window: np.ndarray,
    bands: np.ndarray, expected: int, power: np.ndarray, counts: np.ndarray,
) -> None:
    """FFT `count` frames of `samples` (hop apart) and add their band power to the columns."""
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[: (count - 1) * hop + 1 : hop]
    spectra = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    columns = power.shape[0]
    centres = start + np.arange(count) * hop + N_FFT // 2
    index = np.minimum(centres * columns // max(expected, 1), columns - 1)
    firsts = np.flatnonzero(np.diff(index, prepend=-1))  # index is sorted: runs per column
    power[index[firsts]] += np.add.reduceat(spectra @ bands, firsts, axis=0)
    counts[index[firsts]] += np.diff(np.append(firsts, count))


def _add_peaks(
    block: np.ndarray, start: int, expected: int, low: np.ndarray, high: np.ndarray
) -> None:
    """Fold a `(channels, n)` block starting at frame `start` into the per-bucket min/max."""
    buckets = len(low)
    index = np.minimum((start + np.arange(block.shape[1])) * buckets // expected, buckets - 1)
    firsts = np.flatnonzero(np.diff(index, prepend=-1))  # index is sorted: runs per bucket
    where = index[firsts]
    low[where] = np.minimum(low[where], np.minimum.reduceat(block.min(axis=0), firsts))
    high[where] = np.maximum(high[where], np.maximum.reduceat(block.max(axis=0), firsts))


def _fill_empty(power: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean power per column; a column no frame centre fell in takes its nearest neighbour's."""
    filled = np.flatnonzero(counts)
    if filled.size == 0:
        return np.zeros_like(power)
    mean = power[filled] / counts[filled, None]
    nearest = np.abs(np.arange(len(counts))[:, None] - filled[None, :]).argmin(axis=1)
    return mean[nearest]


def _band_matrix(samplerate: int) -> np.ndarray:
    """`(bins, rows)` weights averaging FFT bins into log-spaced bands (>= 1 bin each)."""
    bins = N_FFT // 2 + 1
    nyquist = samplerate / 2
    edges = np.geomspace(min(F_LOW_HZ, nyquist / 2), nyquist, SPEC_ROWS + 1) * N_FFT / samplerate
    matrix = np.zeros((bins, SPEC_ROWS))
    for row in range(SPEC_ROWS):
        first = min(math.floor(edges[row]), bins - 1)
        last = max(first + 1, min(math.ceil(edges[row + 1]), bins))
        matrix[first:last, row] = 1.0 / (last - first)
    return matrix


def _count_frames(path: Path) -> int:
    from stemsplit.audio.reader import read_blocks

    return max(1, sum(block.shape[1] for block in read_blocks(path)))


def _report_track(
    track: Path, stems: dict[str, Path], mixture: Path | None, reference: Path | None,
    metrics: list[str] | None = None,
) -> Path:
    references, scores = None, None
    if reference is not None:
        if reference.is_dir():
            references, reference_mixture = find_stems(reference)
            if metrics is not None:
                scores = _scores(track.name, stems, mixture, references, reference_mixture,
                                 metrics)  # fmt: skip
        else:
            logger.warning("no reference folder %s: no SDR for %s", reference, track.name)
    return write_report(track, stems, mixture=mixture, metadata=read_metadata(track),
                        references=references, scores=scores)


def _scores(
    track: str, stems: dict[str, Path], mixture: Path | None, references: dict[str, Path],
    reference_mixture: Path | None, metrics: list[str],
) -> dict[str, dict[str, float | None]]:
    """`{stem: {metric: value}}` by `stemsplit.evaluate`: eval's values for these files
    (log_wmse takes the references' mixture, else the report's)."""
    from stemsplit.evaluate import evaluate_stems

    if not set(stems) & set(references):
        return {}  # _sdrs has said which stems have no reference

    def with_mixture(files: dict[str, Path], mix: Path | None) -> dict[str, Path]:
        return {**files, MIXTURE: mix} if mix is not None else dict(files)

    result = evaluate_stems(track, with_mixture(stems, mixture),
                            with_mixture(references, reference_mixture), metrics)  # fmt: skip
    names = result.metric_names()
    return {score.stem: {name: getattr(score, name) for name in names} for score in result.scores}


def _audio_named(folder: Path, name: str) -> Path | None:
    """The audio file `folder/<name>.<ext>`, if there is one."""
    found = [p for p in sorted(folder.iterdir())
             if p.stem == name and p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
    if not found:
        logger.warning("no mixture %s.* in %s", name, folder)
    return found[0] if found else None


def _sdrs(stems: dict[str, Path], references: dict[str, Path]) -> dict[str, float]:
    scores = {}
    for name, path in stems.items():
        if name in references:
            scores[name] = round(signal_to_distortion(Path(references[name]), Path(path)), 3)
    missing = sorted(set(stems) - set(references))
    if references and missing:
        logger.warning("no reference for stem(s) %s: no SDR for them", ", ".join(missing))
    return scores


def _mixture_beside(track_dir: Path, mixture: Path) -> Path:
    """The mixture as the page will load it: in place when a relative URL reaches it."""
    if not mixture.is_file():
        raise InputError(f"mixture file not found: {mixture}")
    try:
        os.path.relpath(mixture.resolve(), track_dir.resolve())
        return mixture
    except ValueError:  # another drive (Windows): no relative path, copy it beside
        copy = track_dir / f"{MIXTURE}{mixture.suffix.lower()}"
        shutil.copyfile(mixture, copy)
        return copy


def _relative_url(path: Path, start: Path) -> str:
    relative = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return quote(Path(relative).as_posix())


def _render(template: str, title: str, data: dict[str, Any]) -> str:
    assets = resources.files("stemsplit") / "report_assets"
    page = (assets / template).read_text(encoding="utf-8")
    script = (assets / "report.js").read_text(encoding="utf-8")
    # "<" escaped so no "</script>" inside a value can end the data block early.
    payload = json.dumps(_finite(data), allow_nan=False, default=str).replace("<", "\\u003c")
    return (
        page.replace("__TITLE__", html.escape(title))
        .replace("__DATA__", payload)
        .replace("__SCRIPT__", script)
    )


def _finite(value: Any) -> Any:
    """NaN/Inf (not JSON) as null, recursively, so metadata can never break the page."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def require_pillow() -> Any:
    """Pillow's Image module, or one error line saying how to install it: a requested
    report that cannot be drawn fails the run before any work, never silently."""
    try:
        from PIL import Image
    except ImportError as err:
        raise StemsplitError(
            "--report needs Pillow to draw spectrograms and it is not installed: "
            "pip install pillow (or reinstall stemsplit-cli, which depends on it)"
        ) from err
    return Image


def _write_png(image: Any, rgb: np.ndarray, path: Path) -> None:
    _atomic(path, lambda tmp: image.fromarray(rgb, mode="RGB").save(tmp, format="PNG"))


def _write_text(path: Path, text: str) -> Path:
    _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _atomic(path: Path, write: Any) -> None:
    """Write through a temporary file beside `path`, then rename: never a half-written file."""
    try:
        write_atomic(path, write)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
