"""Where the tests find the fixtures the repository carries (tests/fixtures; its README
says what each is and which tools/ script made it from which upstream code).

`STEMSPLIT_FIXTURES=DIR` runs the parity tests against another folder of the same
layout instead, e.g. the larger ones beside the dev checkout (`../shared/fixtures`);
MSST fixtures that only such a folder has are then checked too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
CARRIED = TESTS / "fixtures"
FIXTURES = Path(os.environ.get("STEMSPLIT_FIXTURES") or CARRIED).resolve()
MUSIC = CARRIED / "music"  # 3 s of MUSDB18's "Music Delta - 80s Rock": mixture, stems, .stem.mp4
MIXTURE = MUSIC / "mixture.flac"
TRACK = "Music Delta - 80s Rock"
STEM_MP4 = MUSIC / f"{TRACK}.stem.mp4"
CONFIGS = CARRIED / "configs"  # the public RoFormer checkpoints' MSST configs


def fixture(name: str) -> Path:
    """A parity fixture's folder (bs_roformer, mel_roformer, conv_tasnet, ...)."""
    return FIXTURES / name


def audio_file(folder: Path, name: str) -> Path:
    """A fixture's `<name>` audio: 24-bit FLAC here (`.flac`), float WAV in ../shared's."""
    found = [p for p in (folder / f"{name}.flac", folder / f"{name}.wav") if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{folder} has neither {name}.flac nor {name}.wav")
    return found[0]


def audio_files(folder: Path) -> list[Path]:
    """Every reference stem in a fixture's `demix/` or `separate/` folder, by name."""
    return sorted([*folder.glob("*.flac"), *folder.glob("*.wav")], key=lambda p: p.stem)


def mixture_of(folder: Path) -> Path:
    """A fixture's input: mixture.flac (24-bit) here, mixture.wav in ../shared's."""
    return audio_file(folder, "mixture")


def music(frames: int, offset: int = 0) -> np.ndarray:
    """`(frames, 2)` float32 of the carried mixture from `offset`, looped when longer."""
    import soundfile

    mix = soundfile.read(str(MIXTURE), dtype="float32", always_2d=True)[0]
    reps = -(-(offset + frames) // len(mix))
    return np.ascontiguousarray(np.concatenate([mix] * reps)[offset : offset + frames])
