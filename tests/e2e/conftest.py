"""End-to-end set-up: the real command in a subprocess, real audio (the carried clip).

Inputs are cut from the MUSDB sample's mixture and re-encoded in the shapes users
bring (mono 22.05 kHz WAV, 48 kHz FLAC, MP3, 5.1 WAV, AAC in .m4a); the model is a
tiny Demucs checkpoint written by the `demucs` package itself, so a run takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from carried import MUSIC
from e2e_cli import write_m4a
from zoo_server import ZooServer

SECONDS = 2.5
RATE = 44100


@pytest.fixture(scope="session")
def musdb() -> Path:
    """3 s of the MUSDB sample: mixture.flac, the stems, the `.stem.mp4` (tests/fixtures/music)."""
    return MUSIC


@pytest.fixture(scope="session")
def inputs(musdb: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real music in several containers, rates and channel counts (2.5 s, odd lengths)."""
    import soundfile
    import soxr

    folder = tmp_path_factory.mktemp("inputs")
    mix, rate = soundfile.read(musdb / "mixture.flac", dtype="float32",
                               frames=int(SECONDS * RATE) + 123)  # fmt: skip
    assert rate == RATE
    mono = soxr.resample(mix.mean(axis=1), RATE, 22050).astype(np.float32)
    surround = np.stack(  # FL FR FC LFE BL BR
        [mix[:, 0], mix[:, 1], mix.mean(1), 0.2 * mix.mean(1), 0.5 * mix[:, 0], 0.5 * mix[:, 1]],
        axis=1,
    )
    files = {
        "stereo": (folder / "stereo.flac", mix, RATE, "PCM_24"),
        "mono": (folder / "mono22k.wav", mono, 22050, "PCM_16"),
        "hirate": (folder / "hirate48k.flac", soxr.resample(mix, RATE, 48000), 48000, "PCM_24"),
        "mp3": (folder / "song.mp3", mix, RATE, "MPEG_LAYER_III"),
        "surround": (folder / "surround.wav", surround, RATE, "PCM_16"),
    }
    paths = {}
    for name, (path, audio, sr, subtype) in files.items():
        soundfile.write(str(path), np.clip(audio, -1, 1), sr, subtype=subtype)
        paths[name] = path
    paths["m4a"] = write_m4a(folder / "clip.m4a", mix, RATE)
    return paths


@pytest.fixture(scope="session")
def tiny_demucs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny HDemucs saved by demucs' own serialize_model + torch.save (fp16 state).

    Depth 4 with nfft 1024 collapses the frequency axis where the hybrid branches
    meet (zoo_checkpoints' depth-2 HDemucs loads, but cannot run, in demucs too).
    """
    pytest.importorskip("demucs")
    import torch
    import zoo_checkpoints as zc
    from demucs.hdemucs import HDemucs

    torch.manual_seed(0)
    # segment 2 s: a 2.5 s track is two overlapping chunks (demucs pads every chunk
    # to the segment, so the default 40 s would cost 16x the audio)
    model = HDemucs(sources=zc.SOURCES, channels=4, depth=4, nfft=1024, dconv_comp=2,
                    segment=2)
    path = tmp_path_factory.mktemp("models") / "tiny.th"
    return zc.save_bytes(path, zc.demucs_package_bytes(model))


@pytest.fixture
def server():
    """A running ZooServer on 127.0.0.1 (the mirror for zoo downloads)."""
    with ZooServer() as running:
        yield running
