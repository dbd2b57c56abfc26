"""BS-RoFormer / Mel-Band RoFormer: parity with MSST's fixtures, MSST's state_dict
layout for configs the fixtures do not cover, published parameter counts, the mel
band map, and config validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from carried import CONFIGS, fixture, mixture_of
from parity import fixture_snr_db, snr_db

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe, SeparationModel
from stemsplit.models.roformer import build_roformer
from stemsplit.models.roformer import network as roformer_network
from stemsplit.models.roformer.config import DEFAULT_FREQS_PER_BANDS
from stemsplit.models.roformer.mel_bands import (
    hz_to_mel,
    mel_band_membership,
    mel_filterbank,
    mel_to_hz,
)
from stemsplit.zoo.safe_yaml import load_yaml

SMALL_MODEL: dict[str, Any] = {
    "dim": 16,
    "depth": 2,
    "stereo": True,
    "num_stems": 1,
    "time_transformer_depth": 1,
    "freq_transformer_depth": 1,
    "linear_transformer_depth": 0,
    "dim_head": 8,
    "heads": 2,
    "stft_n_fft": 2048,
    "stft_hop_length": 441,
    "stft_win_length": 2048,
    "mask_estimator_depth": 2,
    "mlp_expansion_factor": 4,
}
FOUR_STEMS = ["drums", "bass", "other", "vocals"]


def msst_config(model: dict[str, Any], stems: list[str] | None = None) -> dict[str, Any]:
    """A whole MSST-style config around a `model` section."""
    training: dict[str, Any] = {"instruments": ["vocals", "other"], "target_instrument": "vocals"}
    if stems is not None:
        training = {"instruments": stems, "target_instrument": None}
    return {
        "audio": {"chunk_size": 44100, "num_channels": 2 if model.get("stereo") else 1},
        "model": model,
        "training": training,
        "inference": {"batch_size": 3, "num_overlap": 4},
    }


def small(architecture: str, **changes: Any) -> dict[str, Any]:
    model = {**SMALL_MODEL, **changes}
    if architecture == "mel_band_roformer":
        model.setdefault("num_bands", 60)
        model.setdefault("sample_rate", 44100)
    return model


# ---------------------------------------------------------------- parity fixtures


@pytest.mark.parametrize("group_tokens", [4096, 60])
@pytest.mark.parametrize(
    ("folder", "architecture"),
    [("bs_roformer", "bs_roformer"), ("mel_roformer", "mel_band_roformer")],
)
def test_forward_matches_msst_fixture(
    folder: str, architecture: str, group_tokens: int, monkeypatch
) -> None:
    """Also with the axial passes cut into many small groups of sequences (60 tokens:
    one 51-frame sequence per time group, a few frames per band group)."""
    monkeypatch.setattr(roformer_network, "_GROUP_TOKENS", group_tokens)
    path = fixture(folder)
    config = load_yaml(path / "config.yaml")
    model = build_roformer(architecture, config).eval()
    state = torch.load(path / "model.ckpt", map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)

    audio, _ = sf.read(mixture_of(path), dtype="float32", always_2d=True)
    chunk = torch.from_numpy(np.ascontiguousarray(audio.T))[:, : config["audio"]["chunk_size"]]
    with torch.no_grad():
        out = model(chunk[None]).numpy()

    reference = np.load(path / "forward_output.npy")
    if reference.ndim == 3:  # MSST's Mel-RoFormer squeezes a single stem
        reference = reference[:, None]
    assert out.shape == reference.shape
    assert np.abs(reference).max() > 1e-2  # the comparison is not between silences
    # random weights round differently on other CPUs: SNR, not max abs (30 dB under the
    # network's own fp32 vs fp64 agreement: 114-135 dB here; 50 dB for ../shared's)
    assert snr_db(reference, out) >= fixture_snr_db(path)


# ---------------------------------------------------------------- MSST key layout


def msst_state_shapes(architecture: str, model: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state_dict MSST's BSRoformer / MelBandRoformer create, written out from
    reading `models/bs_roformer/{bs_roformer,mel_band_roformer}.py` (independent of
    our module tree)."""
    dim, heads, dim_head = model["dim"], model["heads"], model["dim_head"]
    inner = heads * dim_head
    channels = 2 if model["stereo"] else 1
    mel = architecture == "mel_band_roformer"
    shapes: dict[str, tuple[int, ...]] = {}

    def transformer(prefix: str, depth: int, linear: bool) -> None:
        for index in range(depth):
            attn, ff = f"{prefix}layers.{index}.0.", f"{prefix}layers.{index}.1."
            shapes[attn + "norm.gamma"] = (dim,)
            if linear:
                shapes[attn + "to_qkv.0.weight"] = (3 * inner, dim)
                shapes[attn + "temperature"] = (heads, 1, 1)
                shapes[attn + "to_out.1.weight"] = (dim, inner)
            else:
                shapes[attn + "rotary_embed.freqs"] = (dim_head // 2,)
                shapes[attn + "to_qkv.weight"] = (3 * inner, dim)
                shapes[attn + "to_gates.weight"] = (heads, dim)
                shapes[attn + "to_gates.bias"] = (heads,)
                shapes[attn + "to_out.0.weight"] = (dim, inner)
            shapes[ff + "net.0.gamma"] = (dim,)
            shapes[ff + "net.1.weight"] = (4 * dim, dim)
            shapes[ff + "net.1.bias"] = (4 * dim,)
            shapes[ff + "net.4.weight"] = (dim, 4 * dim)
            shapes[ff + "net.4.bias"] = (dim,)
        if mel:  # norm_output=True in Mel, False in BS
            shapes[prefix + "norm.gamma"] = (dim,)

    for block in range(model["depth"]):
        slot = 0
        if model.get("linear_transformer_depth", 0) > 0:
            transformer(f"layers.{block}.0.", model["linear_transformer_depth"], linear=True)
            slot = 1
        transformer(f"layers.{block}.{slot}.", model["time_transformer_depth"], linear=False)
        transformer(f"layers.{block}.{slot + 1}.", model["freq_transformer_depth"], linear=False)
    if not mel:
        shapes["final_norm.gamma"] = (dim,)

    if mel:
        bins = mel_band_membership(
            model["sample_rate"], model["stft_n_fft"], model["num_bands"]
        ).sum(axis=1)
    else:
        bins = model.get("freqs_per_bands", DEFAULT_FREQS_PER_BANDS)
    band_inputs = [2 * channels * int(count) for count in bins]
    for band, size in enumerate(band_inputs):
        shapes[f"band_split.to_features.{band}.0.gamma"] = (size,)
        shapes[f"band_split.to_features.{band}.1.weight"] = (dim, size)
        shapes[f"band_split.to_features.{band}.1.bias"] = (dim,)

    # BS: MLP(depth=mask_estimator_depth) has that many Linears; Mel's has one more.
    linears = model["mask_estimator_depth"] + (1 if mel else 0)
    hidden = dim * model["mlp_expansion_factor"]
    for stem in range(model["num_stems"]):
        for band, size in enumerate(band_inputs):
            dims = [dim] + [hidden] * (linears - 1) + [2 * size]
            for layer in range(linears):
                key = f"mask_estimators.{stem}.to_freqs.{band}.0.{2 * layer}."
                shapes[key + "weight"] = (dims[layer + 1], dims[layer])
                shapes[key + "bias"] = (dims[layer + 1],)
    return shapes


LAYOUT_CASES = [
    ("bs_roformer", {}),
    ("bs_roformer", {"num_stems": 4}),
    ("bs_roformer", {"mask_estimator_depth": 1, "zero_dc": False}),
    ("bs_roformer", {"mask_estimator_depth": 3, "linear_transformer_depth": 1}),
    ("bs_roformer", {"time_transformer_depth": 2, "mlp_expansion_factor": 2, "depth": 3}),
    (
        "bs_roformer",
        {
            "stereo": False,
            "stft_n_fft": 1024,
            "stft_win_length": 1024,
            "stft_hop_length": 256,
            "freqs_per_bands": (1,) * 32 + (8,) * 16 + (32,) * 10 + (33,),
        },
    ),
    ("mel_band_roformer", {}),
    ("mel_band_roformer", {"num_stems": 4, "mask_estimator_depth": 1}),
    ("mel_band_roformer", {"mask_estimator_depth": 3, "linear_transformer_depth": 2}),
    ("mel_band_roformer", {"num_bands": 32, "stft_n_fft": 1024, "stft_win_length": 1024}),
]


@pytest.mark.parametrize(("architecture", "changes"), LAYOUT_CASES)
def test_state_dict_has_msst_layout(architecture: str, changes: dict[str, Any]) -> None:
    model_section = small(architecture, **changes)
    stems = FOUR_STEMS if model_section["num_stems"] == 4 else None
    model = build_roformer(architecture, msst_config(model_section, stems))
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    expected = msst_state_shapes(architecture, model_section)
    assert sorted(set(ours) ^ set(expected)) == []
    assert ours == expected


@pytest.mark.parametrize(
    ("architecture", "changes"),
    [LAYOUT_CASES[1], LAYOUT_CASES[3], LAYOUT_CASES[5], LAYOUT_CASES[7]],
)
def test_output_shape_and_metadata(architecture: str, changes: dict[str, Any]) -> None:
    model_section = small(architecture, **changes)
    num_stems = model_section["num_stems"]
    stems = FOUR_STEMS if num_stems == 4 else None
    model = build_roformer(architecture, msst_config(model_section, stems)).eval()
    assert isinstance(model, SeparationModel)
    channels = 2 if model_section["stereo"] else 1
    assert model.audio_channels == channels
    assert model.sources == (FOUR_STEMS if stems else ["vocals"])
    assert model.residual == (None if stems else "other")
    assert model.samplerate == 44100
    assert model.valid_length(12345) == 12345
    assert model.recipe == Recipe(44100, 0.75, "fade", "reflect-border", "none", 3)

    mix = torch.randn(2, channels, 10007) * 0.1  # not a multiple of the hop
    with torch.no_grad():
        out = model(mix)
        single = model(mix[1:])
    assert out.shape == (2, num_stems, channels, 10007)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], single, atol=1e-5, rtol=0)


def test_zero_dc_removes_only_the_dc_bin() -> None:
    torch.manual_seed(0)
    with_dc = build_roformer("bs_roformer", msst_config(small("bs_roformer", zero_dc=False)))
    no_dc = build_roformer("bs_roformer", msst_config(small("bs_roformer", zero_dc=True)))
    no_dc.load_state_dict(with_dc.state_dict(), strict=True)
    mix = torch.randn(1, 2, 44100) * 0.1 + 0.05  # an offset: energy at DC
    with torch.no_grad():
        difference = (with_dc(mix) - no_dc(mix))[0, 0]
    assert difference.abs().max() > 1e-4
    window = torch.hann_window(2048)
    spectrum = torch.stft(difference, 2048, 441, window=window, return_complex=True).abs() ** 2
    interior = spectrum[..., 4:-4]  # frames away from the edges
    assert interior[:, :2].sum() > 0.99 * interior.sum()


# ---------------------------------------------------------------- real configs


@pytest.mark.parametrize(
    ("name", "architecture", "count", "sources", "residual"),
    [
        (
            "model_bs_roformer_ep_317_sdr_12.9755.yaml",
            "bs_roformer",
            159_758_092,
            ["vocals"],
            "other",
        ),
        (
            "config_vocals_mel_band_roformer_kj.yaml",
            "mel_band_roformer",
            228_202_852,
            ["vocals"],
            "other",
        ),
    ],
)
def test_real_configs_have_published_parameter_counts(
    name: str, architecture: str, count: int, sources: list[str], residual: str
) -> None:
    config = load_yaml(CONFIGS / name)
    model = build_roformer(architecture, config)
    assert sum(parameter.numel() for parameter in model.parameters()) == count
    assert model.sources == sources and model.residual == residual
    assert model.recipe.segment_samples == 352800 and model.recipe.overlap == 0.5


def test_four_stem_config_lists_instruments() -> None:
    path = CONFIGS / "config_bs_roformer_384_8_2_485100.yaml"
    model = build_roformer("bs_roformer", load_yaml(path))
    assert model.sources == ["Drums", "Bass", "Other", "Vocals"]
    assert model.residual is None
    assert len(model.mask_estimators) == 4


# ---------------------------------------------------------------- mel bands


def test_slaney_mel_scale_points() -> None:
    # Slaney: linear 200/3 Hz per mel below 1 kHz (15 mel), log step ln(6.4)/27 above.
    assert hz_to_mel(np.array(1000.0)) == pytest.approx(15.0)
    assert hz_to_mel(np.array(500.0)) == pytest.approx(7.5)
    assert hz_to_mel(np.array(6400.0)) == pytest.approx(15.0 + 27.0)
    freqs = np.array([0.0, 100.0, 999.0, 1000.0, 4321.0, 22050.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, rtol=1e-12, atol=1e-9)


def test_mel_membership_matches_the_fixture_bands() -> None:
    membership = mel_band_membership(44100, 2048, 60)
    assert membership.shape == (60, 1025)
    assert membership.any(axis=0).all()
    assert membership.sum(axis=0).max() == 2  # neighbours overlap, never three deep
    # Band sizes of the mel_roformer fixture (band_split gamma sizes / 4): first, last.
    sizes = membership.sum(axis=1)
    assert sizes[0] == 7 and sizes[1] == 6 and sizes[-1] == 130
    assert membership[0, 0] and membership[-1, -1]


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "num_bands"),
    [(44100, 2048, 60), (44100, 2048, 128), (48000, 4096, 60), (16000, 512, 40)],
)
def test_mel_filterbank_matches_librosa(sample_rate: int, n_fft: int, num_bands: int) -> None:
    librosa = pytest.importorskip("librosa")
    reference = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=num_bands)
    ours = mel_filterbank(sample_rate, n_fft, num_bands)
    np.testing.assert_array_equal(ours > 0, reference > 0)
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("architecture", "changes", "message"),
    [
        ("bs_roformer", {"num_bands": 60}, "unknown model keys"),
        ("mel_band_roformer", {"freqs_per_bands": (1025,)}, "unknown model keys"),
        ("bs_roformer", {"freqs_per_bands": (512, 512)}, "sums to 1024"),
        ("bs_roformer", {"dim": "16"}, "must be an integer"),
        ("bs_roformer_experimental", {"use_pope": True}, "unknown model keys"),
        ("bs_roformer", {"dim_head": 7}, "even"),
        ("bs_roformer", {"num_stems": 2}, "target_instrument"),
        ("mel_band_roformer", {"num_bands": 0}, "must be positive"),
    ],
)
def test_bad_model_sections_raise_model_error(
    architecture: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        build_roformer(architecture, msst_config(small(architecture, **changes)))


def test_training_only_keys_are_accepted_and_create_nothing() -> None:
    plain = build_roformer("bs_roformer", msst_config(small("bs_roformer")))
    extras = {
        "attn_dropout": 0.1,
        "ff_dropout": 0.1,
        "flash_attn": True,
        "dim_freqs_in": 1025,
        "multi_stft_resolution_loss_weight": 1.0,
        "multi_stft_resolutions_window_sizes": (4096, 2048, 1024, 512, 256),
        "multi_stft_hop_size": 147,
        "multi_stft_normalized": False,
        "use_torch_checkpoint": False,
        "skip_connection": False,
        "stft_normalized": False,
    }
    loaded = build_roformer("bs_roformer", msst_config(small("bs_roformer", **extras)))
    assert plain.state_dict().keys() == loaded.state_dict().keys()


def test_other_config_errors() -> None:
    with pytest.raises(ModelError, match="architecture"):
        build_roformer("htdemucs", msst_config(small("bs_roformer")))
    config = msst_config(small("bs_roformer", num_stems=4), ["vocals", "other"])
    with pytest.raises(ModelError, match="num_stems is 4"):
        build_roformer("bs_roformer", config)
    config = msst_config(small("bs_roformer"))
    config["audio"]["num_channels"] = 1
    with pytest.raises(ModelError, match="num_channels"):
        build_roformer("bs_roformer", config)
    del config["audio"]["chunk_size"]
    config["audio"]["num_channels"] = 2
    with pytest.raises(ModelError, match="chunk_size"):
        build_roformer("bs_roformer", config)
    with pytest.raises(ModelError, match="'model' section"):
        build_roformer("bs_roformer", {"training": {"instruments": ["a"]}})
