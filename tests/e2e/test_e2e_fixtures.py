"""The CLI reproduces the upstream reference outputs carried in tests/fixtures.

RoFormers: MSST's `demix()` (chunk_size, num_overlap 2, fades, reflect border).
Conv-TasNet: demucs v2's separate flow (track normalisation, overlap 0.25, shifts 0,
the model's `segment_length` from its args.json). Float32 output, exact shape and
length, and an SNR 30 dB under the network's own fp32 vs fp64 agreement (meta.json:
114-135 dB for the carried fixtures; 50 dB for the larger RoFormers in ../shared, whose
agreement is 53-69 dB): other CPUs round random-weight networks differently; stemsplit
matches the upstream float outputs at 130+ dB on the CPU that made them; the carried
24-bit FLACs hold those to 114-118 dB, which is what these tests then measure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from carried import audio_file, audio_files, fixture, mixture_of
from e2e_cli import stemsplit
from parity import fixture_snr_db, snr_db


def _separate(folder: Path, out: Path, checkpoint: str, config: str, *extra: str) -> dict:
    result = stemsplit(mixture_of(folder), "--checkpoint", folder / checkpoint,
                       "--config", folder / config, "--bit-depth", "float32", "-o", out,
                       "--json", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    assert track["status"] == "done", track
    return {stem: Path(path) for stem, path in track["stems"].items()}


def _assert_reproduces(written: dict[str, Path], references: list[Path], mixture: Path) -> None:
    assert references, "the fixture has no reference stems"
    bar = fixture_snr_db(mixture.parent)
    for reference in references:
        expected, rate = soundfile.read(str(reference), dtype="float32", always_2d=True)
        path = written[reference.stem]
        info = soundfile.info(str(path))
        assert (info.subtype, info.samplerate) == ("FLOAT", rate)
        actual = soundfile.read(str(path), dtype="float32", always_2d=True)[0]
        assert actual.shape == expected.shape == (soundfile.info(str(mixture)).frames, 2)
        assert np.abs(expected).max() > 1e-2  # a real signal, not silence against silence
        snr = snr_db(expected, actual)
        assert snr >= bar, f"{reference.stem}: {snr:.1f} dB"


@pytest.mark.parametrize("name", ["bs_roformer", "mel_roformer"])
def test_roformer_cli_reproduces_msst_demix(tmp_path, name):
    folder = fixture(name)
    written = _separate(folder, tmp_path, "model.ckpt", "config.yaml")
    # one-target vocals models: the residual is written too, and sums back to the input
    assert list(written) == ["vocals", "other"]
    _assert_reproduces(written, audio_files(folder / "demix"), mixture_of(folder))
    mix = soundfile.read(str(mixture_of(folder)), dtype="float32")[0]
    vocals, other = (soundfile.read(str(written[s]), dtype="float32")[0] for s in written)
    assert np.abs(vocals + other - mix).max() <= 1e-6


def test_vocals_model_gives_instrumental_by_that_name(tmp_path):
    """`-s instrumental` on a vocals-only RoFormer whose config calls the residual `other`."""
    folder = fixture("bs_roformer")
    written = _separate(folder, tmp_path, "model.ckpt", "config.yaml", "-s", "instrumental")
    assert list(written) == ["instrumental"]
    mix = soundfile.read(str(mixture_of(folder)), dtype="float32")[0]
    vocals = soundfile.read(str(audio_file(folder / "demix", "vocals")), dtype="float32")[0]
    instrumental = soundfile.read(str(written["instrumental"]), dtype="float32")[0]
    assert instrumental.shape == mix.shape
    assert snr_db(mix - vocals, instrumental) >= fixture_snr_db(folder)


def test_conv_tasnet_cli_reproduces_demucs_v2_separate(tmp_path):
    folder = fixture("conv_tasnet")
    settings = json.loads((folder / "separate" / "settings.json").read_text())
    assert (settings["shifts"], settings["overlap"]) == (0, 0.25)
    written = _separate(folder, tmp_path, "model.th", "args.json", "--shifts", "0")
    assert list(written) == ["drums", "bass", "other", "vocals"]
    _assert_reproduces(written, audio_files(folder / "separate"), mixture_of(folder))
