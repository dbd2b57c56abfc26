"""UVR VR Architecture against audio-separator 0.47.1's VRSeparator, through the CLI.

`vr_new`: a tiny VR 5.1 CascadedNet (nout 4, nout_lstm 8) on 4band_v4_ms_fullband
with TTA, post-processing, high-end process, window 320, aggression 12, batch 2.
`vr_nets`: the old CascadedASPPNet at UVR's smallest capacity (31 MB, so its weights
are rebuilt from a seed, not kept) on 4band_v3, window 384, aggression 7, batch 3.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from e2e_cli import stemsplit
from uvr_fixture import DATA, MIN_SNR_DB, MIXTURE, compare, run_cli

from stemsplit.errors import ModelError
from stemsplit.models.uvr.vr_nets import CascadedASPPNet, CascadedNet, network_from_state
from stemsplit.zoo import uvr_data

pytest.importorskip("samplerate", reason="VR models merge bands with libsamplerate (stemsplit-cli[vr])")
pytest.importorskip("scipy", reason="VR models resample bands with scipy (stemsplit-cli[vr])")

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _vr_nets_model(folder: Path, tmp_path: Path) -> Path:
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    from make_uvr_fixtures import vr_nets_weights

    seed = json.loads((folder / "fixture.json").read_text())["seed"]
    path = tmp_path / "model.pth"
    torch.save(vr_nets_weights(seed), str(path))
    return path


@pytest.mark.parametrize("name", ["vr_new", "vr_nets"])
def test_cli_reproduces_audio_separator(tmp_path, name):
    folder = DATA / name
    model = folder / "model.pth" if name == "vr_new" else _vr_nets_model(folder, tmp_path)
    written = run_cli(model, tmp_path / "out", "--config", folder / "config.json")
    figures = compare(folder, written)
    assert min(figures.values()) >= MIN_SNR_DB, figures


def test_unknown_model_without_config_is_one_line(tmp_path):
    model = tmp_path / "Mystery.pth"
    model.write_bytes((DATA / "vr_new" / "model.pth").read_bytes())
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


def test_settings_from_config_and_engine_flags():
    state = torch.load(str(DATA / "vr_new" / "model.pth"), weights_only=True)
    config = json.loads((DATA / "vr_new" / "config.json").read_text())
    model = uvr_data.build_vr_model(state, DATA / "vr_new" / "model.pth", config)
    assert model.sources == ["echo", "no_echo"] and model.samplerate == 44100
    assert model.settings.window_size == 320 and model.settings.enable_tta
    model.apply_engine_settings(batch_size=4, tta=False)
    assert model.settings.batch_size == 4 and not model.settings.enable_tta
    with pytest.raises(ModelError, match="unknown vr_params: window"):
        uvr_data.build_vr_model(state, DATA / "vr_new" / "model.pth",
                                {**config, "vr_params": {"window": 3}})  # fmt: skip
