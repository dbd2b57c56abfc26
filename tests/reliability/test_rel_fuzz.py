"""Fuzzing the untrusted-input parsers: audio reader, checkpoint and config loaders.

Each target gets mutated real files (byte flips, cuts, splices, header fields) and
random bytes; the only acceptable failure is a StemsplitError with a one-line
message. The default run is a few hundred derandomized cases per target; the
`slow` variants run 5,000 (`STEMSPLIT_FUZZ_EXAMPLES` overrides both).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import zoo_checkpoints as zc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemsplit.audio.reader import read_all
from stemsplit.errors import StemsplitError
from stemsplit.zoo.loader import load_bundle
from stemsplit.zoo.safe_yaml import load_yaml_text

QUICK = int(os.environ.get("STEMSPLIT_FUZZ_EXAMPLES", 200))
FULL = int(os.environ.get("STEMSPLIT_FUZZ_EXAMPLES", 5000))


def _fuzz_settings(examples: int):
    return settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def _seeds() -> dict[str, bytes]:
    """Small valid files in each container libsndfile and PyAV read."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((600, 2))).astype(np.float32)
    seeds = {}
    for name, fmt, subtype in (("wav", "WAV", "PCM_16"), ("f32.wav", "WAV", "FLOAT"),
                               ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
                               ("aiff", "AIFF", "PCM_16"), ("mp3", "MP3", None)):  # fmt: skip
        buffer = io.BytesIO()
        sf.write(buffer, audio if fmt != "MP3" else np.tile(audio, (4, 1)), 44100,
                 format=fmt, subtype=subtype)  # fmt: skip
        seeds[name] = buffer.getvalue()
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """(a seed's extension, its bytes mutated a few times) or random bytes."""
    name = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[name])
    if draw(st.integers(0, 9)) == 0:
        return name, draw(st.binary(max_size=2048))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "word", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "word" and at + 4 <= len(data):  # a header length or count
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 2**31, 3]))
            data[at:at + 4] = value.to_bytes(4, "little")
        elif kind == "zero":
            data[at:at + 16] = bytes(min(16, len(data) - at))
    return name, bytes(data)


def _check_reader(case: tuple[str, bytes], folder: Path) -> None:
    name, payload = case
    path = folder / f"fuzz.{name}"
    path.write_bytes(payload)
    try:
        audio = read_all(path, samplerate=22050)
    except StemsplitError as err:
        assert "\n" not in str(err)
        return
    assert audio.dtype == np.float32 and audio.shape[0] == 2
    assert np.isfinite(audio).all()


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory(prefix="stemsplit-fuzz-") as folder:
        yield Path(folder)


def test_fuzz_reader(scratch: Path) -> None:
    @_fuzz_settings(QUICK)
    @given(mutated(SEEDS))
    def run(case):
        _check_reader(case, scratch)

    run()


@pytest.mark.slow
def test_fuzz_reader_full(scratch: Path) -> None:
    @_fuzz_settings(FULL)
    @given(mutated(SEEDS))
    def run(case):
        _check_reader(case, scratch)

    run()


def _checkpoint_seeds() -> dict[str, bytes]:
    tasnet = zc.tasnet_model()
    legacy = io.BytesIO()
    torch.save(tasnet.state_dict(), legacy, _use_new_zipfile_serialization=False)
    seeds = {
        "th": zc.state_dict_bytes(tasnet),  # zip format
        "legacy.th": legacy.getvalue(),  # raw pickle, as demucs v2 wrote
    }
    from importlib.util import find_spec

    if find_spec("demucs") is not None:  # the test-only reference writes Demucs packages
        tiny = zc.demucs_model("HDemucs")  # depth 2: loads (running is not fuzzed)
        seeds["demucs.th"] = zc.demucs_package_bytes(tiny)
    return seeds


CHECKPOINTS = _checkpoint_seeds()


def _check_checkpoint(case: tuple[str, bytes], folder: Path) -> None:
    name, payload = case
    path = folder / f"fuzz.{name}"
    path.write_bytes(payload)
    try:
        bundle = load_bundle(checkpoint=path)
    except StemsplitError as err:
        assert "\n" not in str(err)
        return
    assert bundle.sources and bundle.members


def test_fuzz_checkpoint_loader(scratch: Path) -> None:
    @_fuzz_settings(QUICK)
    @given(mutated(CHECKPOINTS))
    def run(case):
        _check_checkpoint(case, scratch)

    run()


@pytest.mark.slow
def test_fuzz_checkpoint_loader_full(scratch: Path) -> None:
    @_fuzz_settings(FULL)
    @given(mutated(CHECKPOINTS))
    def run(case):
        _check_checkpoint(case, scratch)

    run()


YAML_SEEDS = {"mel.yaml": zc.TINY_MEL_YAML.encode(), "bs.yaml": zc.TINY_BS_YAML.encode()}


def _check_config(case: tuple[str, bytes]) -> None:
    """The yaml parser, then the MSST config reader (architecture, model section).

    Stops short of building the network: sizes are checked as types, not bounded.
    """
    from stemsplit.models.roformer import config as roformer_config
    from stemsplit.zoo.checkpoints import msst_architecture

    _, payload = case
    try:
        config = load_yaml_text(payload.decode("utf-8", "replace"), "fuzz.yaml")
        architecture = msst_architecture(config, "fuzz.yaml").name
        read = (roformer_config.bs_roformer_config if architecture == "bs_roformer"
                else roformer_config.mel_band_roformer_config)  # fmt: skip
        read(config["model"])
    except StemsplitError as err:
        assert "\n" not in str(err)


def test_fuzz_config_loader() -> None:
    @_fuzz_settings(QUICK)
    @given(mutated(YAML_SEEDS))
    def run(case):
        _check_config(case)

    run()


@pytest.mark.slow
def test_fuzz_config_loader_full() -> None:
    @_fuzz_settings(FULL)
    @given(mutated(YAML_SEEDS))
    def run(case):
        _check_config(case)

    run()


def test_regression_huge_float_samples_do_not_become_nan(tmp_path: Path) -> None:
    """Found by test_fuzz_reader: a float WAV holding 1e38 overflowed the downmix and the
    resampler into Inf/NaN. Samples beyond ±256 are now zeroed like NaN, with a warning."""
    audio = np.full((1000, 6), 0.25, np.float32)
    audio[10:20] = 1e38
    audio[30, 2] = -3e38
    path = tmp_path / "huge.wav"
    sf.write(path, audio, 44100, subtype="FLOAT")
    got = read_all(path, samplerate=22050)
    assert np.isfinite(got).all() and np.abs(got).max() < 2
    native = read_all(path)  # no resampling: the bad frames are exactly zero
    assert (native[:, 10:20] == 0).all() and np.allclose(native[:, 40:], 0.25)


def test_regression_wav_with_format_tag_0_is_undecodable(tmp_path: Path) -> None:
    """Found by test_fuzz_reader_full: libsndfile refuses the 'fmt ' chunk, and PyAV's
    stream then has no `rate` (AttributeError escaped the PyAV probe)."""
    path = tmp_path / "tag0.wav"
    sf.write(path, np.zeros((600, 2), np.float32), 44100, subtype="FLOAT")
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt "
    data[20:22] = b"\x00\x00"  # WAVE_FORMAT 0 (unknown)
    path.write_bytes(bytes(data))
    with pytest.raises(StemsplitError) as caught:
        read_all(path)
    assert "tag0.wav" in str(caught.value) and "\n" not in str(caught.value)


def test_regression_pickle_with_a_huge_length_is_a_model_error(tmp_path: Path) -> None:
    """Found by test_fuzz_checkpoint_loader_full: a legacy pickle whose BINBYTES8 length
    is 2**60 made the opcode scan behind our error message raise MemoryError."""
    path = tmp_path / "huge.th"
    path.write_bytes(b"\x80\x02\x8e" + (2**60).to_bytes(8, "little") + b"abcdef.")
    with pytest.raises(StemsplitError) as caught:
        load_bundle(checkpoint=path)
    assert "huge.th" in str(caught.value) and "\n" not in str(caught.value)


def test_regression_legacy_pickle_with_an_unknown_storage_key(tmp_path: Path) -> None:
    """Found by test_fuzz_checkpoint_loader_full: torch's legacy reader *asserts* that
    every storage key it lists was seen; a damaged key escaped as AssertionError."""
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    import re

    key = re.findall(rb"\d{6,}", data)[-1]  # the storage key, listed after the pickle
    at = data.rindex(key)
    damaged = data[:at] + key[::-1].replace(key[:1], b"9", 1)[: len(key)] + data[at + len(key):]
    assert damaged != data
    path = tmp_path / "legacy.th"
    path.write_bytes(damaged)
    with pytest.raises(StemsplitError) as caught:
        load_bundle(checkpoint=path)
    assert "legacy.th" in str(caught.value) and "\n" not in str(caught.value)
