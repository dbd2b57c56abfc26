"""Score estimated stems against references: folders of stems, trees of tracks, or a model.

`evaluate_folders(ESTIMATES, REFERENCES)`: each side is a folder of `<stem>.<ext>` files
(one track) or a tree of such folders (tracks matched by folder name). `evaluate_model`
separates each `<track>/mixture.<ext>` of a MUSDB-style dataset with `stemsplit.api` and
scores the result against the reference stems beside it. Only stems present on both sides
are scored; the others are reported in `EvalReport.missing`. Files named `mixture` are the
input, never a stem. Lengths that differ by at most `MAX_LENGTH_DIFFERENCE_SECONDS` are
cropped to the shorter (with a warning); larger differences are an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from stemsplit import metrics
from stemsplit.errors import InputError, UsageError
from stemsplit.stem_folders import MIXTURE, Stems, find_tracks

logger = logging.getLogger(__name__)

# Every metric `eval` can compute, in table order: SDRs in dB, then MSST's community
# metrics (stemsplit.community_metrics; msst_si_sdr and log_wmse read like dB, the others
# 0-100). log_wmse also needs each track's mixture.
METRICS = ("usdr", "si_sdr", "bss_sdr", "msst_si_sdr", "k_sdr", "l1_freq", "bleedless",
           "fullness", "aura_stft", "aura_mrstft", "log_wmse")  # fmt: skip
DEFAULT_METRICS = ("usdr", "si_sdr", "bss_sdr")  # bss_sdr: when museval is installed
MAX_LENGTH_DIFFERENCE_SECONDS = 0.05  # codec delay/padding: up to about 2 MP3 frames


def check_metrics(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The metrics asked for (None: the default; "all": every one), in table order."""
    if names is None:
        return DEFAULT_METRICS
    wanted = set(METRICS) if "all" in names else set(names)
    unknown = sorted(wanted - set(METRICS))
    if unknown or not wanted:
        raise UsageError(f"--metrics {','.join(unknown) or '(none)'}: use any of "
                         f"{', '.join(METRICS)} or all")  # fmt: skip
    return tuple(m for m in METRICS if m in wanted)


@dataclass(frozen=True)
class StemScore:
    """The scores of one stem of one track; a metric not computed is None (`bss_sdr`
    without museval, the community metrics unless asked for)."""

    track: str
    stem: str
    usdr: float
    si_sdr: float
    bss_sdr: float | None = None
    cropped_samples: int = 0
    msst_si_sdr: float | None = None
    k_sdr: float | None = None
    l1_freq: float | None = None
    bleedless: float | None = None
    fullness: float | None = None
    aura_stft: float | None = None
    aura_mrstft: float | None = None
    log_wmse: float | None = None


@dataclass
class EvalReport:
    """Per-stem scores, what could not be matched, and the tracks a model failed on."""

    scores: list[StemScore] = field(default_factory=list)
    missing: list[dict[str, str | None]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    metrics: tuple[str, ...] = DEFAULT_METRICS

    def metric_names(self) -> list[str]:
        """The metrics computed (bss_sdr only when museval ran)."""
        with_bss = any(s.bss_sdr is not None for s in self.scores)
        return [m for m in self.metrics if m != "bss_sdr" or with_bss]

    def aggregate(self) -> dict[str, dict[str, dict[str, float]]]:
        """`{stem: {metric: {"mean", "median"}}}` over tracks; stem "all" averages each
        track's stems first (the MDX "mean SDR" when every track has the same stems)."""
        per_stem: dict[str, list[StemScore]] = {}
        per_track: dict[str, list[StemScore]] = {}
        for score in self.scores:
            per_stem.setdefault(score.stem, []).append(score)
            per_track.setdefault(score.track, []).append(score)
        result: dict[str, dict[str, dict[str, float]]] = {}
        groups = {stem: [[s] for s in scores] for stem, scores in per_stem.items()}
        if len(per_stem) > 1:
            groups["all"] = list(per_track.values())
        for name, tracks in groups.items():
            result[name] = {}
            for metric in self.metric_names():
                # One value per track: the mean over that track's stems in the group.
                values = [float(np.nanmean([getattr(s, metric) for s in t])) for t in tracks]
                result[name][metric] = {
                    "mean": float(np.nanmean(values)),
                    "median": float(np.nanmedian(values)),
                    "tracks": len(values),
                }
        return result

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (NaN stays NaN: json writes it as NaN)."""
        names = self.metric_names()
        return {
            "metrics": names,
            "scores": [{"track": s.track, "stem": s.stem, **{m: getattr(s, m) for m in names},
                        "cropped_samples": s.cropped_samples} for s in self.scores],
            "aggregate": self.aggregate(),
            "missing": self.missing,
            "failed": self.failed,
            "warnings": self.warnings,
        }

    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per (track, stem), then `mean`/`median` rows per stem over tracks."""
        names = self.metric_names()
        rows: list[dict[str, Any]] = [
            {"track": s.track, "stem": s.stem, **{m: getattr(s, m) for m in names}}
            for s in self.scores
        ]
        for stem, by_metric in self.aggregate().items():
            for stat in ("mean", "median"):
                rows.append(
                    {"track": stat, "stem": stem, **{m: by_metric[m][stat] for m in names}}
                )
        return rows


def evaluate_folders(
    estimates: str | os.PathLike[str],
    references: str | os.PathLike[str],
    bsseval: bool | None = None,
    on_track: Callable[[str], None] | None = None,
    metrics: list[str] | tuple[str, ...] | None = None,
) -> EvalReport:
    """Score ESTIMATES against REFERENCES (folders of stems or trees of tracks).

    `bsseval`: None = when museval is available, True = required, False = never.
    `metrics`: names from METRICS (None: DEFAULT_METRICS; "all"); bss_sdr among them
    follows `bsseval`.
    """
    report = EvalReport(metrics=check_metrics(metrics))
    est_tracks, ref_tracks = find_tracks(estimates), find_tracks(references)
    if len(est_tracks) == 1 and len(ref_tracks) == 1:
        # One track each side: pair them whatever their folders are called.
        name = next(iter(ref_tracks))
        pairs = [(name, next(iter(est_tracks.values())), ref_tracks[name])]
    else:
        pairs = [(n, est_tracks[n], ref_tracks[n]) for n in ref_tracks if n in est_tracks]
        for name in ref_tracks.keys() - est_tracks.keys():
            report.missing.append({"track": name, "stem": None, "missing_from": "estimates"})
        for name in est_tracks.keys() - ref_tracks.keys():
            report.missing.append({"track": name, "stem": None, "missing_from": "references"})
    _check_mixtures(pairs, report, metrics)
    _score_pairs(pairs, report, bsseval, on_track)
    return report


def evaluate_stems(
    track: str,
    estimates: Stems,
    references: Stems,
    metrics: list[str] | tuple[str, ...] | None = None,
    bsseval: bool | None = None,
) -> EvalReport:
    """Score one track's stem files (`{stem: path}`, a `mixture` on either side feeds
    log_wmse): the pairing, checks and values of `evaluate_folders`, for a caller that
    has found the files already (`stemsplit report --metrics`)."""
    report = EvalReport(metrics=check_metrics(metrics))
    pairs = [(track, dict(estimates), dict(references))]
    _check_mixtures(pairs, report, metrics)
    _score_pairs(pairs, report, bsseval, None)
    return report


def _check_mixtures(pairs: list[tuple[str, Stems, Stems]], report: EvalReport,
                    asked: list[str] | tuple[str, ...] | None) -> None:  # fmt: skip
    """log_wmse scales by the mixture (`mixture.<ext>` beside the reference stems, or the
    estimates): without one for every track it is an error when asked for by name, and
    left out with a warning under "all"."""
    if "log_wmse" not in report.metrics:
        return
    lacking = [name for name, est, ref in pairs if MIXTURE not in ref and MIXTURE not in est]
    if not lacking:
        return
    where = ", ".join(lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    message = f"log_wmse needs the mixture: no {MIXTURE}.<ext> beside the references of {where}"
    if "log_wmse" in (asked or ()):
        raise UsageError(message)
    report.metrics = tuple(m for m in report.metrics if m != "log_wmse")
    logger.warning("%s: left out", message)
    report.warnings.append(f"{message}: left out")


def find_dataset(dataset: str | os.PathLike[str]) -> dict[str, tuple[Path, Stems]]:
    """`{track: (mixture file, reference stems)}` for each folder holding a `mixture.<ext>`."""
    found = {
        name: (stems.pop(MIXTURE), stems)
        for name, stems in _find_tracks_with_mixture(dataset).items()
    }
    if not found:
        raise InputError(f"no <track>/{MIXTURE}.<ext> files under {dataset}: not a MUSDB-style "
                         "folder (give ESTIMATES REFERENCES to score stems you already have)")
    return found


def _find_tracks_with_mixture(dataset: str | os.PathLike[str]) -> dict[str, Stems]:
    tracks: dict[str, Stems] = {}
    for name, stems in find_tracks(dataset).items():
        if MIXTURE in stems:
            tracks[name] = stems
        else:
            logger.debug("%s has no %s file: not a track", name, MIXTURE)
    return tracks


def evaluate_model(
    dataset: str | os.PathLike[str],
    model: Any = None,
    save_stems: str | os.PathLike[str] | None = None,
    bsseval: bool | None = None,
    on_track: Callable[[str], None] | None = None,
    *,
    separate: Callable[..., Any],
    metrics: list[str] | tuple[str, ...] | None = None,
    **options: Any,
) -> EvalReport:
    """Separate each track's mixture with `model` (a zoo name or bundle; None: the
    default, or `checkpoint` in `options`; `separate` is `stemsplit.api.separate`,
    passed in: the API sits above this module) and score it.

    The stems go to a temporary folder, or to `save_stems` to keep them (stems already
    there are reused: `skip_existing`). `options` go to `separate` (device, shifts, ...).
    """
    report = EvalReport(metrics=check_metrics(metrics))
    tracks = find_dataset(dataset)
    with tempfile.TemporaryDirectory(prefix="stemsplit-eval-") as tmp:
        # api names outputs after the input file; every input is `mixture.<ext>`, so give
        # each one its track's name through a link (or a copy where links are refused).
        inputs: dict[Path, str] = {}
        for name, (mixture, _) in tracks.items():
            link = Path(tmp) / "inputs" / f"{name}{mixture.suffix}"
            link.parent.mkdir(exist_ok=True)
            try:
                link.symlink_to(mixture.resolve())
            except OSError:
                shutil.copyfile(mixture, link)
            inputs[link] = name
        out = Path(save_stems) if save_stems is not None else Path(tmp) / "stems"
        results = separate(
            list(inputs), model=model, out=out, filename="{track}/{stem}.{ext}",
            format="wav", bit_depth="float32", **options,
        )
        pairs = []
        for result in results:
            name = inputs.get(Path(result.input), Path(result.input).stem)
            if result.status == "failed":
                report.failed.append({"track": name, "error": result.error or "failed"})
                continue
            pairs.append((name, dict(result.stems), {**tracks[name][1], MIXTURE: tracks[name][0]}))
        _score_pairs(pairs, report, bsseval, on_track)
    return report


def _score_pairs(
    pairs: list[tuple[str, Stems, Stems]],
    report: EvalReport,
    bsseval: bool | None,
    on_track: Callable[[str], None] | None,
) -> None:
    if "bss_sdr" not in report.metrics or bsseval is False:
        use_bss = False
    elif bsseval:
        if not metrics.museval_available():
            raise UsageError(f"--bsseval: {metrics.museval_error()}")
        use_bss = True
    else:
        use_bss = metrics.museval_available()
    for name, est_stems, ref_stems in pairs:
        mixture = ref_stems.get(MIXTURE) or est_stems.get(MIXTURE)
        est_stems = {k: v for k, v in est_stems.items() if k != MIXTURE}
        ref_stems = {k: v for k, v in ref_stems.items() if k != MIXTURE}
        common = [stem for stem in ref_stems if stem in est_stems]
        for stem in ref_stems.keys() - est_stems.keys():
            report.missing.append({"track": name, "stem": stem, "missing_from": "estimates"})
        for stem in est_stems.keys() - ref_stems.keys():
            report.missing.append({"track": name, "stem": stem, "missing_from": "references"})
        if on_track:
            on_track(name)
        if common:
            report.scores.extend(_score_track(name, common, est_stems, ref_stems, use_bss,
                                              report.warnings, report.metrics, mixture))  # fmt: skip
    report.missing.sort(key=lambda m: (m["track"] or "", m["stem"] or ""))
    if not report.scores and not report.failed:
        raise UsageError(
            "no stem matches between estimates and references (same track folder names "
            "and <stem>.<ext> file names are needed)"
        )


def _score_track(
    track: str, stems: list[str], est_stems: Stems, ref_stems: Stems, use_bss: bool,
    warnings: list[str], wanted: tuple[str, ...] = DEFAULT_METRICS, mixture: Path | None = None,
) -> list[StemScore]:
    from stemsplit.audio.reader import probe, read_all

    info = probe(ref_stems[stems[0]])
    rate, channels = info.samplerate, info.channels
    mix = None
    if "log_wmse" in wanted and mixture is not None:
        mix = read_all(mixture, samplerate=rate, channels=channels)
    scores: list[StemScore] = []
    refs, ests = [], []  # kept for museval only, which scores a track's stems together
    for stem in stems:
        reference = read_all(ref_stems[stem], samplerate=rate, channels=channels)
        estimate = read_all(est_stems[stem], samplerate=rate, channels=channels)
        reference, estimate, crop = align(reference, estimate, rate, f"{track}/{stem}")
        if crop:
            message = (f"{track}/{stem}: estimate and reference lengths differ by {crop} "
                       "samples; cropped to the shorter")
            logger.warning(message)
            warnings.append(message)
        usdr = metrics.usdr(reference, estimate)
        fitted = None if mix is None else _fit(mix, reference.shape[-1], rate, f"{track}/{stem}")
        community = _community(reference, estimate, usdr, wanted, fitted)
        scores.append(StemScore(track, stem, usdr, metrics.si_sdr(reference, estimate), None,
                                crop, **community))  # fmt: skip
        if use_bss:
            refs.append(reference)
            ests.append(estimate)
    if use_bss:
        length = min(r.shape[-1] for r in refs)  # museval wants one length for all stems
        values = metrics.bss_sdr([r[:, :length] for r in refs], [e[:, :length] for e in ests],
                                 rate)
        scores = [replace(score, bss_sdr=value) for score, value in zip(scores, values)]
    return scores


def _fit(mixture: np.ndarray, length: int, samplerate: int, label: str) -> np.ndarray:
    """The mixture at the scored length: cropped as MSST crops it, or padded with silence
    when a codec frame or two shorter (InputError when further off, as `align`)."""
    if abs(mixture.shape[-1] - length) > MAX_LENGTH_DIFFERENCE_SECONDS * samplerate:
        raise InputError(f"{label}: the mixture has {mixture.shape[-1]} samples, the stems "
                         f"{length}: is it the same track?")  # fmt: skip
    return np.pad(mixture[:, :length], ((0, 0), (0, max(0, length - mixture.shape[-1]))))


def _community(reference: np.ndarray, estimate: np.ndarray, usdr: float,
               wanted: tuple[str, ...], mixture: np.ndarray | None = None) -> dict[str, float]:  # fmt: skip
    """The community metrics in `wanted`, as MSST computes them (stemsplit.community_metrics);
    log_wmse when `mixture` (cropped to the pair's length) is given."""
    from stemsplit import community_metrics as community

    values: dict[str, float] = {}
    if "k_sdr" in wanted:
        values["k_sdr"] = community.k_sdr(usdr)  # MSST's sdr is uSDR
    if "log_wmse" in wanted and mixture is not None:
        values["log_wmse"] = community.log_wmse(reference, estimate, mixture)
    if "bleedless" in wanted or "fullness" in wanted:
        bleedless, fullness = community.bleedless_fullness(reference, estimate)
        values.update({"bleedless": bleedless, "fullness": fullness})
    for name, function in community.COMMUNITY_METRICS.items():
        if name in wanted:
            values[name] = function(reference, estimate)
    return {name: value for name, value in values.items() if name in wanted}


def align(
    reference: np.ndarray, estimate: np.ndarray, samplerate: int, label: str = "estimate",
    max_difference_seconds: float = MAX_LENGTH_DIFFERENCE_SECONDS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Crop both to the shorter length; returns them and the samples cropped.

    InputError when the lengths differ by more than `max_difference_seconds`.
    """
    difference = abs(reference.shape[-1] - estimate.shape[-1])
    if difference > max_difference_seconds * samplerate:
        raise InputError(
            f"{label}: estimate has {estimate.shape[-1]} samples, reference "
            f"{reference.shape[-1]} ({difference / samplerate:.3f} s apart): "
            "are they the same track?"
        )
    length = min(reference.shape[-1], estimate.shape[-1])
    return reference[..., :length], estimate[..., :length], difference
