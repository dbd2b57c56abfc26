"""The audio formats stemsplit reads and writes: one table each, shared by CLI, batch and writer.

Output formats map a bit depth to a libsndfile (soundfile) format/subtype pair. Lossy
formats have no bit depth: the encoder takes float input. Input extensions only decide
which files a folder expansion picks up; the reader itself sniffs the content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stemsplit.errors import UsageError

BitDepth = int | str  # 16, 24 or "float32"

FLOAT32 = "float32"
_FLOAT_ALIASES = {"float32", "32f", "f32", "float", "32float"}


@dataclass(frozen=True)
class OutputFormat:
    """One output format: file extension, libsndfile container and subtype per bit depth."""

    name: str
    extension: str
    container: str
    subtypes: dict[BitDepth | None, str] = field(hash=False)
    default_bit_depth: BitDepth | None
    lossy: bool
    # libopus encodes 8/12/16/24/48 kHz only; the writer resamples to this rate.
    fixed_samplerate: int | None = None

    def subtype(self, bit_depth: BitDepth | None) -> str:
        """The libsndfile subtype for `bit_depth` (already normalised)."""
        return self.subtypes[bit_depth]


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "wav": OutputFormat(
        "wav", "wav", "WAV", {16: "PCM_16", 24: "PCM_24", FLOAT32: "FLOAT"}, 16, lossy=False
    ),
    "flac": OutputFormat("flac", "flac", "FLAC", {16: "PCM_16", 24: "PCM_24"}, 16, lossy=False),
    "mp3": OutputFormat("mp3", "mp3", "MP3", {None: "MPEG_LAYER_III"}, None, lossy=True),
    "ogg": OutputFormat("ogg", "ogg", "OGG", {None: "VORBIS"}, None, lossy=True),
    "opus": OutputFormat(
        "opus", "opus", "OGG", {None: "OPUS"}, None, lossy=True, fixed_samplerate=48000
    ),
}

# NI Stems (`-f stem.mp4`, alias `stems`): a track's stems in one MP4 (audio/stem_mp4.py);
# not a libsndfile format, so not in OUTPUT_FORMATS.
STEM_FILE_FORMAT = "stem.mp4"
_STEM_FILE_NAMES = frozenset({"stem.mp4", "stems", "stem"})


def is_stem_file(name: str) -> bool:
    """Whether `-f name` asks for NI Stems files."""
    return str(name).strip().lower().lstrip(".") in _STEM_FILE_NAMES


# Extensions a folder expansion picks up (lower case, no dot). The reader sniffs content:
# libsndfile first (wav, flac, mp3, ogg, opus, aiff, ...), then PyAV/FFmpeg (the rest).
AUDIO_EXTENSIONS: frozenset[str] = frozenset({
    "wav", "wave", "flac", "mp3", "ogg", "oga", "opus", "aiff", "aif", "aifc", "w64", "rf64",
    "caf", "au", "m4a", "aac", "mp4", "m4v", "wma", "webm", "mkv", "mka", "mov", "avi", "ac3",
    "eac3", "alac", "ape", "wv", "mpc", "amr", "3gp", "flv",
})


CLIP_POLICIES = ("clamp", "rescale", "none")
MP3_BITRATES_KBPS = (8, 320)  # the range libmp3lame accepts


def check_mp3_bitrate(kbps: int) -> int:
    """UsageError for a bitrate the MP3 encoder cannot do."""
    low, high = MP3_BITRATES_KBPS
    if isinstance(kbps, bool) or not isinstance(kbps, int) or not low <= kbps <= high:
        raise UsageError(f"mp3 bitrate {kbps} kbps is out of range: use {low} to {high}")
    return kbps


def check_clip(policy: str) -> str:
    """UsageError for an unknown `--clip`."""
    if policy not in CLIP_POLICIES:
        raise UsageError(f"unknown clip policy {policy!r}: use one of {', '.join(CLIP_POLICIES)}")
    return policy


def normalize_bit_depth(bit_depth: BitDepth | None) -> BitDepth | None:
    """16, 24, "16", "24" -> int; "float32"/"32f"/"float" -> "float32"; None stays None."""
    if bit_depth is None:
        return None
    text = str(bit_depth).strip().lower()
    if text in {"16", "24"}:
        return int(text)
    if text in _FLOAT_ALIASES:
        return FLOAT32
    raise UsageError(f"unknown bit depth {bit_depth!r}: use 16, 24 or float32")


def output_format(name: str) -> OutputFormat:
    """The format called `name` (case-insensitive, a leading dot allowed)."""
    key = name.strip().lower().lstrip(".")
    try:
        return OUTPUT_FORMATS[key]
    except KeyError:
        known = ", ".join([*OUTPUT_FORMATS, STEM_FILE_FORMAT])
        raise UsageError(f"unknown output format {name!r}: use one of {known}") from None


def resolve_output(name: str, bit_depth: BitDepth | None) -> tuple[OutputFormat, BitDepth | None]:
    """Check a format/bit-depth pair; returns the format and the bit depth to use."""
    fmt = output_format(name)
    depth = normalize_bit_depth(bit_depth)
    if depth is None:
        return fmt, fmt.default_bit_depth
    if fmt.lossy:
        raise UsageError(
            f"{fmt.name} has no bit depth (it is a lossy format): drop --bit-depth {bit_depth}"
        )
    if depth not in fmt.subtypes:
        allowed = ", ".join(str(d) for d in fmt.subtypes)
        raise UsageError(f"{fmt.name} cannot store bit depth {bit_depth}: use one of {allowed}")
    return fmt, depth


# NI Stems files (`-f stem.mp4`, audio.stem_mp4): NI's order of tracks 1-4, and codecs.
SLOTS = ("drums", "bass", "other", "vocals")
STEM_CODECS = ("aac", "alac")
