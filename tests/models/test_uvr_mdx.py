"""UVR MDX-Net (ONNX) against audio-separator 0.47.1's MDXSeparator, through the CLI.

The fixtures (tools/make_uvr_fixtures.py) are tiny random-weight ONNX graphs with the
MDX signature, run by audio-separator at non-default settings (denoise, overlap,
segment_size != dim_t, hop 512, batch 2, normalisation and amplification thresholds).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
from e2e_cli import stemsplit
from uvr_fixture import DATA, MIN_SNR_DB, MIXTURE, compare, expected_stem, run_cli, snr_db

from stemsplit.errors import ModelError
from stemsplit.models.base import SelfChunking
from stemsplit.zoo import uvr_data

pytest.importorskip("onnxruntime", reason="MDX-Net models need onnxruntime (stemsplit-cli[onnx])")


@pytest.mark.parametrize("name", ["mdx_denoise", "mdx_reverb"])
def test_cli_reproduces_audio_separator(tmp_path, name):
    folder = DATA / name
    written = run_cli(folder / "model.onnx", tmp_path, "--config", folder / "config.json")
    figures = compare(folder, written)
    assert min(figures.values()) >= MIN_SNR_DB, figures


def test_md5_keyed_config_and_two_stems(tmp_path):
    """A config keyed by the file's UVR hash (as UVR stores model data) works, and the
    secondary stem is a real output: --two-stems writes it and its complement."""
    folder = DATA / "mdx_reverb"
    model = folder / "model.onnx"
    record = json.loads((folder / "config.json").read_text())
    settings = {k: record.pop(k) for k in list(record) if k in uvr_data.SETTINGS}
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({uvr_data.uvr_hash(model): record, "0" * 32: {}, **settings}))
    written = run_cli(model, tmp_path / "out", "--config", keyed, "--two-stems", "reverb")
    assert list(written) == ["reverb", "no_reverb"]
    expected = expected_stem(folder, "reverb")
    reverb = soundfile.read(str(written["reverb"]), dtype="float32")[0]
    assert snr_db(expected, reverb) >= MIN_SNR_DB
    mix = soundfile.read(str(MIXTURE), dtype="float32")[0]
    rest = soundfile.read(str(written["no_reverb"]), dtype="float32")[0]
    assert np.abs(mix - reverb - rest).max() <= 1e-5


def test_unknown_model_without_config_is_one_line(tmp_path):
    model = tmp_path / "Mystery.onnx"
    model.write_bytes((DATA / "mdx_reverb" / "model.onnx").read_bytes() + b"\0")
    result = stemsplit(MIXTURE, "--checkpoint", model, "-o", tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for field in ("--config", "compensate", "mdx_dim_f_set", "mdx_dim_t_set",
                  "mdx_n_fft_scale_set", "primary_stem"):  # fmt: skip
        assert field in lines[0]


def test_hash_lookup_needs_no_config(tmp_path, monkeypatch):
    model = DATA / "mdx_denoise" / "model.onnx"
    record = json.loads((DATA / "mdx_denoise" / "config.json").read_text())
    table = {uvr_data.uvr_hash(model): {k: record[k] for k in uvr_data.MDX_FIELDS}}
    monkeypatch.setattr(uvr_data, "model_data", lambda kind: table)
    params = uvr_data.resolve_params(model, "mdx", None)
    assert params["mdx_n_fft_scale_set"] == 1024 and "mdx_params" not in params
    built = uvr_data.build_mdx_model(model, None)
    assert isinstance(built, SelfChunking)  # --overlap/--batch-size go to its own framing
    assert built.sources == ["vocals", "instrumental"]
    assert built.settings.segment_size == 256 and built.settings.overlap == 0.25


def test_uvr_hash_reads_the_last_10240000_bytes(tmp_path):
    import hashlib

    big = tmp_path / "big.onnx"
    payload = bytes(range(256)) * 45000  # 11.5 MB
    big.write_bytes(payload)
    assert uvr_data.uvr_hash(big) == hashlib.md5(payload[-10_240_000:]).hexdigest()


def test_public_model_data_is_shipped():
    mdx = uvr_data.model_data("mdx")
    vr = uvr_data.model_data("vr")
    assert len(mdx) > 50 and len(vr) > 25
    assert all("compensate" in r or "config_yaml" in r for r in mdx.values())
    for record in vr.values():
        assert uvr_data.modelparams(record["vr_model_param"])["band"]


def test_bad_mdx_params_are_refused(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"compensate": 1, "mdx_dim_f_set": 64, "mdx_dim_t_set": 5,
                                  "mdx_n_fft_scale_set": 256, "mdx_params": {"hop": 3}}))
    with pytest.raises(ModelError, match="unknown mdx_params: hop"):
        uvr_data.build_mdx_model(DATA / "mdx_reverb" / "model.onnx", config)


def test_engine_flags_win_over_the_config(tmp_path):
    """--overlap reaches MDX's own chunking (the output changes), --batch-size does not
    change the output, and neither is applied a second time by the engine."""
    folder = DATA / "mdx_denoise"
    config = ("--config", folder / "config.json")
    base = run_cli(folder / "model.onnx", tmp_path / "base", *config)
    batched = run_cli(folder / "model.onnx", tmp_path / "b1", *config, "--batch-size", "1")
    moved = run_cli(folder / "model.onnx", tmp_path / "o", *config, "--overlap", "0.75")
    for stem, path in base.items():
        reference = soundfile.read(str(path), dtype="float32")[0]
        same = soundfile.read(str(batched[stem]), dtype="float32")[0]
        other = soundfile.read(str(moved[stem]), dtype="float32")[0]
        assert np.abs(same - reference).max() <= 1e-6, stem
        assert other.shape == reference.shape
        assert 10 <= snr_db(reference, other) < 100, stem  # changed, but still the model


def test_a_ready_bundle_takes_each_runs_flags_not_the_last_runs(tmp_path):
    """Python use: one loaded bundle, separated with --overlap 0.75 and then without it,
    gives the config's overlap the second time (it kept 0.75: flags applied over the
    last run's settings, not over the config's)."""
    import stemsplit
    from stemsplit.zoo.loader import load_bundle

    folder = DATA / "mdx_denoise"
    mix = soundfile.read(str(MIXTURE), dtype="float32", always_2d=True)[0].T[:, :44100 * 2]
    bundle = load_bundle(checkpoint=folder / "model.onnx", config=folder / "config.json")
    (network,) = bundle.members
    config_overlap = network.settings.overlap
    first = stemsplit.separate_array(mix, 44100, model=bundle)
    moved = stemsplit.separate_array(mix, 44100, model=bundle, overlap=0.75)
    assert network.settings.overlap == 0.75 != config_overlap
    again = stemsplit.separate_array(mix, 44100, model=bundle)
    assert network.settings.overlap == config_overlap
    for stem, audio in first.items():
        assert snr_db(audio.T, moved[stem].T) < 100, stem  # the flag changed the stems
        np.testing.assert_array_equal(again[stem], audio)
