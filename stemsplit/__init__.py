"""stemsplit: split songs into stems with Demucs, RoFormer, MSST, UVR and Conv-TasNet models.

Files (what the command line does)::

    import stemsplit
    results = stemsplit.separate("song.wav", model="htdemucs", stems=["vocals"])
    results[0].stems["vocals"]          # Path to separated/htdemucs/song/vocals.wav

Arrays and live streams, models loaded once::

    separator = stemsplit.Separator(model="htdemucs", stems=["vocals"])
    stems = separator.separate_array(audio, 44100)     # {"vocals": float32 array}
    for blocks in separator.stream(chunks, 44100): ...  # each part as soon as final
    separator.separate_file("song.wav")                 # stem files, as the CLI writes

`separate_array(audio, samplerate, model=...)` does one array; `list_models()` lists the
zoo. Options are the command line's, by name (`docs/python.md`). Importing the package
is cheap: torch loads when a model does.
"""

from __future__ import annotations

from typing import Any

from stemsplit.version import __version__

__all__ = [
    "BatchResults",
    "Progress",
    "Separator",
    "StemsplitError",
    "TrackResult",
    "__version__",
    "list_models",
    "list_recipes",
    "separate",
    "separate_array",
    "separate_many",
]

_FROM_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:  # lazy (PEP 562): `import stemsplit` must not import torch
    if name in _FROM_API:
        from stemsplit import api

        return getattr(api, name)
    raise AttributeError(f"module 'stemsplit' has no attribute {name!r}")


def __dir__() -> list[str]:  # the public names, not this module's helpers
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
