"""stemsplit: split songs into stems with Demucs, RoFormer and Conv-TasNet models.

Importing the package is cheap (no torch); the API lives in `stemsplit.api`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "list_models", "separate", "separate_array", "separate_many"]


def __getattr__(name: str):  # lazy: `import stemsplit` must not import torch
    if name in {"separate", "separate_many", "separate_array", "list_models"}:
        from stemsplit import api

        return getattr(api, name)
    if name == "Separator":
        from stemsplit.separator import Separator

        return Separator
    raise AttributeError(name)
