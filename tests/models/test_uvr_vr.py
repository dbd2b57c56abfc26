"""UVR VR Architecture against audio-separator 0.47.1's VRSeparator, through the CLI.

Each fixture (tools/make_uvr_fixtures.py) is a tiny seeded VR net run by
audio-separator itself at non-default `vr_params` and output peak thresholds, over
modelparams of every kind: VR 5.1 CascadedNets on 4band_v4_ms_fullband (`vr_new`,
`vr51_v4_ms`), 4band_v3_sn (`vr51_v3_sn`, issue 29's held-out case), 2band_32000 and
1band_sr32000_hl512 (32 kHz, resampled in and out); the old CascadedASPPNet on
4band_v3 (`vr_nets`), 3band_44100_mid, 3band_44100_msb2, 4band_44100_reverse and
1band_sr44100_hl1024. Only `vr_new`'s weights are kept; the rest are rebuilt from
their seeds.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import soundfile
import torch
from e2e_cli import stemsplit
from parity import snr_db
from uvr_fixture import (
    DATA,
    MIN_SNR_DB,
    MIXTURE,
    compare,
    expected_stem,
    fixture_meta,
    fixture_mixture,
    run_cli,
    vr_model,
)

from stemsplit.errors import ModelError
from stemsplit.models.base import SelfChunking
from stemsplit.models.uvr.vr import VRSettings
from stemsplit.models.uvr.vr_nets import CascadedASPPNet, CascadedNet, network_from_state
from stemsplit.zoo import uvr_data

pytest.importorskip("samplerate", reason="VR models merge bands with libsamplerate (stemsplit-cli[vr])")
pytest.importorskip("scipy", reason="VR models resample bands with scipy (stemsplit-cli[vr])")

FAST = ["vr_new", "vr51_v3_sn", "vr51_v4_ms", "vr51_v2_sn_32k", "vr51_1band_32k",
        "vr_nets_4band_reverse"]  # fmt: skip
# the old nets' 31 MB of weights at window sizes that make them > 10 s each
SLOW = ["vr_nets", "vr_nets_3band_mid", "vr_nets_3band_msb2", "vr_nets_1band_hl1024"]


@pytest.mark.parametrize(
    "name", FAST + [pytest.param(name, marks=pytest.mark.slow) for name in SLOW]
)
def test_cli_reproduces_audio_separator(tmp_path, name):
    folder = DATA / name
    written = run_cli(vr_model(folder, tmp_path), tmp_path / "out", "--config",
                      folder / "config.json", mixture=fixture_mixture(folder))  # fmt: skip
    figures = compare(folder, written)
    assert min(figures.values()) >= MIN_SNR_DB, figures


def test_tta_flag_turns_tta_on(tmp_path):
    """--tta on a config without TTA reproduces the fixture made with it (TTA off
    misses it: test_every_setting_shows_in_the_fixtures)."""
    folder = DATA / "vr51_v3_sn"
    config = json.loads((folder / "config.json").read_text())
    assert config["vr_params"]["enable_tta"]
    config["vr_params"]["enable_tta"] = False
    without = tmp_path / "no_tta.json"
    without.write_text(json.dumps(config))
    written = run_cli(vr_model(folder, tmp_path), tmp_path / "out", "--config", without, "--tta",
                      mixture=fixture_mixture(folder))  # fmt: skip
    figures = compare(folder, written)
    assert min(figures.values()) >= MIN_SNR_DB, figures


def _default_or_other(settings: VRSettings, knob: str) -> object:
    default = getattr(VRSettings(), knob)
    value = getattr(settings, knob)
    if isinstance(value, bool):
        return not value
    if value != default:
        return default
    return {"window_size": 320, "post_process_threshold": 0.3, "normalization_threshold": 1.0,
            "amplification_threshold": 0.99}[knob]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("name", "knobs"), [
    ("vr51_v3_sn", ["enable_tta", "window_size", "aggression", "high_end_process"]),
    ("vr51_v4_ms", ["enable_post_process", "amplification_threshold"]),
    ("vr51_v2_sn_32k", ["post_process_threshold", "normalization_threshold"]),
])  # fmt: skip
def test_every_setting_shows_in_the_fixtures(tmp_path, name, knobs):
    """The fixtures can fail: each setting put back to its default (or, left at it,
    changed) misses the bar (batch_size alone cannot change the samples)."""
    folder = DATA / name
    config = json.loads((folder / "config.json").read_text())
    path = vr_model(folder, tmp_path)
    model = uvr_data.build_vr_model(torch.load(str(path), weights_only=True), path, config)
    mix = soundfile.read(str(fixture_mixture(folder)), dtype="float32", always_2d=True)[0].T
    expected = [expected_stem(folder, stem) for stem in fixture_meta(folder)["stems"]]
    settings = model.settings
    for knob in knobs:
        model.settings = replace(settings, **{knob: _default_or_other(settings, knob)})
        out = model.separate_track(mix, torch.device("cpu"))
        n = min(out.shape[-1], expected[0].shape[0])
        worst = min(snr_db(e[:n], out[i].T[:n]) for i, e in enumerate(expected))
        assert worst < MIN_SNR_DB, (knob, worst)


def test_unknown_model_without_config_is_one_line(tmp_path):
    model = tmp_path / "Mystery.pth"
    model.write_bytes(vr_model(DATA / "vr_new", tmp_path).read_bytes())
    result = stemsplit(MIXTURE, "--checkpoint", model, "-o", tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for field in ("--config", "vr_model_param", "primary_stem", "nout"):
        assert field in lines[0]


def test_networks_are_recognised_from_their_keys():
    new = CascadedNet(1792, 4, 8)
    assert isinstance(network_from_state(new.state_dict(), 896, None, None), CascadedNet)
    old = CascadedASPPNet(1344, 16, 7, False)  # UVR's 33966 KB class
    built = network_from_state(old.state_dict(), 672, None, None)
    assert isinstance(built, CascadedASPPNet) and built.stg1_low_band_net.aspp.branches == 7
    built.load_state_dict(old.state_dict(), strict=True)
    with pytest.raises(ModelError, match="expects 896 bins"):
        network_from_state(new.state_dict(), 672, None, None)


def test_settings_from_config_and_engine_flags(tmp_path):
    path = vr_model(DATA / "vr_new", tmp_path)
    state = torch.load(str(path), weights_only=True)
    config = json.loads((DATA / "vr_new" / "config.json").read_text())
    model = uvr_data.build_vr_model(state, path, config)
    assert isinstance(model, SelfChunking)  # --batch-size/--tta go to its own framing
    assert model.sources == ["echo", "no_echo"] and model.samplerate == 44100
    assert model.settings.window_size == 320 and model.settings.enable_tta
    assert model.settings.normalization_threshold == 0.9
    # --tta's default (False) is no request: the config's TTA stays on (issue 29)
    model.apply_engine_settings(batch_size=4, tta=False)
    assert model.settings.batch_size == 4 and model.settings.enable_tta
    model.config_settings = replace(model.config_settings, enable_tta=False)
    model.apply_engine_settings(tta=True)
    assert model.settings.enable_tta
    model.apply_engine_settings()  # a later run without flags: the config's settings again
    assert model.settings == model.config_settings and model.settings.batch_size != 4
    with pytest.raises(ModelError, match="unknown vr_params: window"):
        uvr_data.build_vr_model(state, path, {**config, "vr_params": {"window": 3}})
