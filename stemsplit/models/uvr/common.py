"""What MDX-Net and VR models share: stem names, whole-track recipe, peak normalisation.

UVR's models are separated as audio-separator 0.47.1 does it, which works on the
whole track at once (peak normalisation of the mix before the network, the VR
spectrogram's global maximum, padding computed from the track's length), so these
models take the track as one long segment and do their own framing inside
`forward`. The engine's recipe is a single "context" chunk of up to
`WHOLE_TRACK_SECONDS`; longer tracks are cut into such chunks, cross-faded by the
engine's triangle window (the only place where results differ from audio-separator).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stemsplit.models.base import Recipe

WHOLE_TRACK_SECONDS = 600
SAMPLERATE = 44100  # audio-separator reads every input at (and writes every stem in) 44.1 kHz

# audio-separator's CommonSeparator.STEM_PAIR_MAPPER; other stems pair "X" <-> "No X".
_PAIRS = {
    "Vocals": "Instrumental",
    "Instrumental": "Vocals",
    "lead_only": "backing_only",
    "backing_only": "lead_only",
    "Primary Stem": "Secondary Stem",
}

# audio-separator's NON_ACCOM_STEMS: VR's aggression is inverted for these primaries.
NON_ACCOMPANIMENT = (
    "Vocals", "Other", "Bass", "Drums", "Guitar", "Piano", "Synthesizer", "Strings",
    "Woodwinds", "Brass", "Wind Inst",
)


def secondary_stem(primary: str) -> str:
    """The UVR name of the stem a model leaves when it extracts `primary`."""
    primary = primary or "No "
    if primary in _PAIRS:
        return _PAIRS[primary]
    return primary.replace("No ", "") if "No " in primary else f"No {primary}"


def stem_name(uvr_name: str) -> str:
    """UVR's stem name as a stemsplit stem: lowercase, words joined by '_'."""
    return "_".join(uvr_name.strip().lower().replace("-", " ").split())


def stem_pair(params: Mapping[str, Any]) -> tuple[str, str]:
    """(primary, secondary) UVR names from a model-data record (default Vocals)."""
    primary = str(params.get("primary_stem") or "Vocals")
    return primary, secondary_stem(primary)


def whole_track_recipe(samplerate: int) -> Recipe:
    """One chunk per track (up to WHOLE_TRACK_SECONDS), no engine normalisation."""
    return Recipe(
        segment_samples=WHOLE_TRACK_SECONDS * samplerate,
        overlap=0.05,
        window="triangle",
        padding="context",
        normalization="none",
        batch_size=1,
    )


def peak_normalize(wave, max_peak: float, min_peak: float | None):
    """audio-separator's spec_utils.normalize, in place on a float32 array."""
    import numpy as np

    peak = np.abs(wave).max()
    if peak > max_peak:
        wave *= max_peak / peak
    elif min_peak is not None and 0 < peak < min_peak:
        wave *= min_peak / peak
    return wave


def normalize_stems(stems, max_peak: float, min_peak: float | None):
    """[stems, C, T] float32, each stem peak-normalised in place as audio-separator's
    writer does (`normalization_threshold`, `amplification_threshold`) before it saves."""
    for stem in stems:
        peak_normalize(stem, max_peak, min_peak)
    return stems
