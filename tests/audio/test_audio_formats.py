"""audio.formats: the input extension list and the output format / bit depth table."""

from __future__ import annotations

import pytest
import soundfile as sf

from stemsplit.audio.formats import (
    AUDIO_EXTENSIONS,
    FLOAT32,
    OUTPUT_FORMATS,
    normalize_bit_depth,
    resolve_output,
)
from stemsplit.errors import UsageError


def test_input_extensions_cover_the_common_formats() -> None:
    wanted = {"wav", "flac", "mp3", "ogg", "oga", "opus", "aiff", "aif", "m4a", "aac", "mp4",
              "wma", "webm", "mkv", "mov"}
    assert wanted <= AUDIO_EXTENSIONS
    assert all(e == e.lower() and not e.startswith(".") for e in AUDIO_EXTENSIONS)


def test_every_output_subtype_is_one_libsndfile_can_write() -> None:
    for fmt in OUTPUT_FORMATS.values():
        for subtype in fmt.subtypes.values():
            assert sf.check_format(fmt.container, subtype), (fmt.name, subtype)
        assert fmt.default_bit_depth in fmt.subtypes


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, None), (16, 16), ("24", 24), ("float32", FLOAT32), ("32f", FLOAT32),
     ("FLOAT", FLOAT32)],
)
def test_bit_depth_aliases(given: object, expected: object) -> None:
    assert normalize_bit_depth(given) == expected


def test_resolve_output_defaults_and_refusals() -> None:
    assert resolve_output("wav", None)[1] == 16
    assert resolve_output(".FLAC", 24)[1] == 24
    assert resolve_output("mp3", None)[1] is None
    for name, depth in [("mp3", 24), ("flac", "float32"), ("ogg", 16), ("wav", 8), ("m4a", None)]:
        with pytest.raises(UsageError):
            resolve_output(name, depth)
