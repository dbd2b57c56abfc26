"""Skip or redo: a track is skipped only when its stems exist and its `stemsplit.json`
says they were made by the same models (names and file checksums) with every setting
that changes the audio or the files. Otherwise it is redone, with the reason in one
line (`redo song: bit depth 16 -> 24`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stemsplit.atomic import write_text_atomic

# Keys of the record that decide the output, and how a reason names them.
_COMPARED = ("models", "model_files", "settings")
_NAMES = {
    "segment_seconds": "segment", "bit_depth": "bit depth", "mp3_bitrate": "mp3 bitrate",
    "two_stems": "two stems", "other_method": "other method", "batch_size": "batch size",
    "model_files": "model files", "samplerate": "sample rate",
}  # fmt: skip


def read_record(path: Path) -> dict[str, Any] | None:
    """A track's record, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, payload: Mapping[str, Any]) -> Path:
    """`stemsplit.json` (or a sidecar), written atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def redo_reason(
    outputs: Mapping[str, Path],
    record_file: Path,
    expected: Callable[[], Mapping[str, Any]],
    is_file: Callable[[Path], bool] = Path.is_file,
    read: Callable[[Path], dict[str, Any] | None] = read_record,
) -> str | None:
    """None when the track's stems are done as `expected()` says; else why to redo it.

    `expected` is asked only when there are stems to compare: it hashes local model
    files (0.1 s for the released HTDemucs), which a first run need not wait for.
    `is_file` and `read` look where the files are (a bucket: `batch.storage.Bucket`)."""
    missing = [stem for stem, path in outputs.items() if not is_file(path)]
    if len(missing) == len(outputs):
        return "not separated yet"
    if missing:
        return f"missing {', '.join(missing)}"
    record = read(record_file)
    if record is None:
        return f"no {record_file.name} says how its stems were made"
    described = expected()
    now = json.loads(json.dumps({k: described.get(k) for k in _COMPARED}, default=str))
    changes = _differences({k: record.get(k) for k in _COMPARED}, now)
    return "; ".join(changes[:3]) if changes else None


def _differences(old: Any, new: Any, key: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in dict.fromkeys([*new, *old]):
            out += _differences(old.get(name), new.get(name), name)
        return out
    if old == new:
        return []
    label = _NAMES.get(key, key.replace("_", " ") or "record")
    if isinstance(old, (list, dict)) or isinstance(new, (list, dict)):
        if key == "model_files":
            return ["model files changed"]
        return [f"{label} {_short(old)} -> {_short(new)}"]
    return [f"{label} {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)
