"""Conv-TasNet (Demucs v2 `tasnet`): parity with the upstream fixture, shape inference,
key layout of the real checkpoints, and the Demucs v2 separate flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from carried import audio_file, fixture, mixture_of

from stemsplit.errors import ModelError
from stemsplit.models.base import Recipe, SeparationModel
from stemsplit.models.conv_tasnet import (
    build_conv_tasnet,
    build_librimix_conv_tasnet,
    infer_conv_tasnet_args,
    infer_librimix_conv_tasnet_args,
    overlap_and_add,
)

SOURCES = ["drums", "bass", "other", "vocals"]
DEFAULTS = {
    "N": 256,
    "L": 20,
    "B": 256,
    "H": 512,
    "P": 3,
    "X": 8,
    "R": 4,
    "audio_channels": 2,
    "norm_type": "gLN",
    "causal": False,
    "mask_nonlinear": "relu",
    "samplerate": 44100,
    "segment_length": 44100 * 8,
}
# demucs v2 pretrained.py: ConvTasNet(X=10, sources=SOURCES), everything else default.
REAL_TASNET = {**DEFAULTS, "sources": SOURCES, "X": 10}
SMALL = {"sources": SOURCES, "N": 16, "B": 8, "H": 24, "X": 3, "R": 2}


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return fixture("conv_tasnet")


@pytest.fixture(scope="module")
def fixture_model(fixture_dir: Path):
    args = json.loads((fixture_dir / "args.json").read_text())
    model = build_conv_tasnet(args)
    state = torch.load(fixture_dir / "model.th", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval(), state, args


@pytest.fixture(scope="module")
def mixture(fixture_dir: Path, fixture_model) -> np.ndarray:
    sf = pytest.importorskip("soundfile")
    audio, samplerate = sf.read(mixture_of(fixture_dir), dtype="float32")
    assert samplerate == fixture_model[2].get("samplerate", 44100)
    return np.ascontiguousarray(audio.T)


def test_forward_matches_demucs_v2_fixture(fixture_model, mixture, fixture_dir) -> None:
    """On the first segment here (the whole 5 s track in ../shared's fixture)."""
    model, _, _ = fixture_model
    expected = np.load(fixture_dir / "forward_output.npy")
    frames = expected.shape[-1]
    with torch.no_grad():
        output = model(torch.from_numpy(mixture[:, :frames].copy())[None]).numpy()
    assert output.shape == expected.shape == (1, 4, 2, frames)
    assert np.abs(expected).max() > 1e-2  # the comparison is not between silences
    assert np.abs(output - expected).max() <= 1e-4


def test_infer_fixture_args(fixture_model) -> None:
    _, state, args = fixture_model
    inferred = infer_conv_tasnet_args(state, samplerate=args.get("samplerate", 44100),
                                      segment_length=args["segment_length"])  # fmt: skip
    assert inferred == {**DEFAULTS, **args}
    # Without a segment length, Demucs v2's default of 8 s.
    assert infer_conv_tasnet_args(state)["segment_length"] == 44100 * 8


def test_real_tasnet_layout_and_inference() -> None:
    """The pretrained `tasnet` / `tasnet_extra` layout, written down from demucs v2."""
    with torch.device("meta"):  # 10.7 M parameters: shapes are all this test needs
        model = build_conv_tasnet(REAL_TASNET)
    state = model.state_dict()
    # encoder 1 + cLN 2 + bottleneck 1 + R*X blocks of 9 tensors + mask 1 + decoder 1
    assert len(state) == 6 + 4 * 10 * 9
    expected_shapes = {
        "encoder.conv1d_U.weight": (256, 2, 20),
        "separator.network.0.gamma": (1, 256, 1),
        "separator.network.0.beta": (1, 256, 1),
        "separator.network.1.weight": (256, 256, 1),
        "separator.network.2.3.9.net.0.weight": (512, 256, 1),
        "separator.network.2.3.9.net.1.weight": (1,),
        "separator.network.2.3.9.net.2.gamma": (1, 512, 1),
        "separator.network.2.3.9.net.2.beta": (1, 512, 1),
        "separator.network.2.3.9.net.3.net.0.weight": (512, 1, 3),
        "separator.network.2.3.9.net.3.net.1.weight": (1,),
        "separator.network.2.3.9.net.3.net.2.gamma": (1, 512, 1),
        "separator.network.2.3.9.net.3.net.3.weight": (256, 512, 1),
        "separator.network.3.weight": (1024, 256, 1),
        "decoder.basis_signals.weight": (40, 256),
    }
    assert {key: tuple(state[key].shape) for key in expected_shapes} == expected_shapes
    block = 512 * 256 + 1 + 2 * 512 + 512 * 3 + 1 + 2 * 512 + 256 * 512
    encoder, head = 256 * 2 * 20 + 2 * 256 + 256 * 256, 1024 * 256 + 40 * 256
    assert sum(v.numel() for v in state.values()) == encoder + 40 * block + head == 10_977_872
    assert infer_conv_tasnet_args(state) == REAL_TASNET
    depthwise = model.separator.network[2][3][9].net[3].net[0]
    assert (depthwise.dilation, depthwise.padding, depthwise.groups) == ((512,), (512,), 512)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"causal": True},
        {"norm_type": "BN", "audio_channels": 1, "L": 16, "P": 5},
        {"norm_type": "id", "sources": ["a", "b"], "mask_nonlinear": "softmax"},
        {"sources": ["speech", "noise", "music"], "samplerate": 16000, "segment_length": 32000},
    ],
)
def test_round_trip_and_forward(overrides: dict) -> None:
    kwargs = {**SMALL, **overrides}
    model = build_conv_tasnet(kwargs).eval()
    state = model.state_dict()
    names = None if kwargs["sources"] == SOURCES else kwargs["sources"]
    inferred = infer_conv_tasnet_args(
        state,
        sources=names,
        samplerate=kwargs.get("samplerate", 44100),
        segment_length=kwargs.get("segment_length", 44100 * 8),
    )
    # Only the mask non-linearity is invisible in a state_dict.
    assert inferred == {**DEFAULTS, **kwargs, "mask_nonlinear": "relu"}
    build_conv_tasnet(inferred).load_state_dict(state, strict=True)

    channels = kwargs.get("audio_channels", 2)
    mix = torch.randn(2, channels, 1003, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        both = model(mix)
        first = model(mix[:1])
    assert both.shape == (2, len(kwargs["sources"]), channels, 1003)
    # Items of a batch never see each other (gLN is per item; BN in eval mode).
    torch.testing.assert_close(both[:1], first, rtol=0, atol=1e-6)
    # Samples after the last whole encoder frame are zeros, as upstream.
    step = kwargs.get("L", 20) // 2
    covered = ((1003 - 2 * step) // step) * step + 2 * step
    assert covered < 1003 and not both[..., covered:].any() and both[..., :covered].any()


def test_protocol_attributes() -> None:
    model = build_conv_tasnet({**SMALL, "segment_length": 88200})
    assert isinstance(model, SeparationModel)
    assert model.sources == SOURCES and model.samplerate == 44100
    assert model.audio_channels == 2 and model.residual is None
    assert model.segment_length == 88200
    assert model.recipe == Recipe(
        segment_samples=88200,
        overlap=0.25,
        window="triangle",
        padding="context",
        normalization="track-mean-std",
        batch_size=1,
    )
    # Demucs v2 feeds every chunk as it is; only a chunk shorter than a frame is padded.
    assert [model.valid_length(n) for n in (20, 21, 88200, 5)] == [20, 21, 88200, 20]
    with pytest.raises(ValueError, match="at least"):
        model(torch.zeros(1, 2, 19))


@pytest.mark.parametrize(("length", "step"), [(20, 10), (7, 3), (16, 16), (5, 2)])
def test_overlap_and_add_against_a_loop(length: int, step: int) -> None:
    frames = torch.randn(2, 3, 11, length, generator=torch.Generator().manual_seed(length))
    expected = torch.zeros(2, 3, 10 * step + length)
    for index in range(11):
        expected[..., index * step : index * step + length] += frames[..., index, :]
    torch.testing.assert_close(overlap_and_add(frames, step), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"N": 16}, "sources"),
        ({**SMALL, "channels": 2}, "unknown"),
        ({**SMALL, "N": 0}, "positive int"),
        ({**SMALL, "H": 2.5}, "positive int"),
        ({**SMALL, "norm_type": "LN"}, "norm_type"),
        ({**SMALL, "mask_nonlinear": "sigmoid"}, "mask_nonlinear"),
        ({**SMALL, "P": 4}, "odd"),
        ({**SMALL, "L": 1}, "at least 2"),
        ({**SMALL, "sources": ["a", "a"]}, "distinct"),
        ({**SMALL, "sources": "drums"}, "distinct"),
        ({**SMALL, "segment_length": 10}, "segment_length"),
    ],
)
def test_bad_kwargs(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        build_conv_tasnet(kwargs)


def test_inconsistent_state_dicts() -> None:
    state = build_conv_tasnet(SMALL).state_dict()
    missing = {k: v for k, v in state.items() if k != "separator.network.2.1.2.net.2.beta"}
    with pytest.raises(ModelError, match="missing"):
        infer_conv_tasnet_args(missing)
    reshaped = {**state, "separator.network.2.1.1.net.0.weight": torch.zeros(25, 8, 1)}
    with pytest.raises(ModelError, match="shape"):
        infer_conv_tasnet_args(reshaped)
    with pytest.raises(ModelError, match="multiple"):
        infer_conv_tasnet_args({**state, "separator.network.3.weight": torch.zeros(63, 8, 1)})
    with pytest.raises(ModelError, match="encoder"):
        infer_conv_tasnet_args({k: v for k, v in state.items() if not k.startswith("encoder")})
    with pytest.raises(ModelError, match="3 names"):
        infer_conv_tasnet_args(state, sources=["a", "b", "c"])
    with pytest.raises(ModelError, match="unexpected"):
        infer_conv_tasnet_args({**state, "decoder.basis_signals.bias": torch.zeros(40)})


def test_engine_reproduces_demucs_v2_separate(fixture_model, mixture, fixture_dir) -> None:
    """The recipe + engine give demucs v2's `separate` (normalise, split, overlap 0.25)."""
    sf = pytest.importorskip("soundfile")
    from stemsplit.engine.runner import EngineSettings, separate_stream
    from stemsplit.engine.source import ArraySource, NormalizedSource

    model, _, _ = fixture_model
    source = NormalizedSource(ArraySource(mixture, model.samplerate))
    blocks = separate_stream(model, source, EngineSettings(device="cpu"))
    stems = np.concatenate([source.denormalize(block) for block in blocks], axis=-1)
    for stem, name in zip(stems, model.sources):
        expected, _ = sf.read(audio_file(fixture_dir / "separate", name), dtype="float32")
        assert np.abs(stem - expected.T).max() <= 1e-5


# --- Libri2Mix (torchaudio CONVTASNET_BASE_LIBRI2MIX layout) ---------------------------
TINY_LIBRIMIX = {
    "enc_kernel_size": 15,
    "enc_num_feats": 32,
    "msk_num_feats": 16,
    "msk_num_hidden_feats": 24,
    "msk_num_layers": 3,
    "msk_num_stacks": 2,
}


def test_librimix_base_layout_and_inference() -> None:
    """torchaudio's conv_tasnet_base(num_sources=2): L=16, N=512, B=128, H=512, X=8, R=3."""
    with torch.device("meta"):
        model = build_librimix_conv_tasnet({})
    state = model.state_dict()
    block = "mask_generator.conv_layers.{}.{}"
    expected_shapes = {
        "encoder.weight": (512, 1, 16),
        "mask_generator.input_norm.weight": (512,),
        "mask_generator.input_conv.bias": (128,),
        block.format(0, "conv_layers.0.weight"): (512, 128, 1),
        block.format(0, "conv_layers.1.weight"): (1,),
        block.format(0, "conv_layers.2.bias"): (512,),
        block.format(22, "conv_layers.3.weight"): (512, 1, 3),
        block.format(22, "res_out.weight"): (128, 512, 1),
        block.format(23, "skip_out.bias"): (128,),
        "mask_generator.output_prelu.weight": (1,),
        "mask_generator.output_conv.weight": (1024, 128, 1),
        "decoder.weight": (512, 1, 16),
    }
    assert {key: tuple(state[key].shape) for key in expected_shapes} == expected_shapes
    assert block.format(23, "res_out.weight") not in state  # the last block has no residual
    assert len(state) == 1 + 4 + 24 * 14 - 2 + 3 + 1
    assert infer_librimix_conv_tasnet_args(state) == {
        "num_sources": 2,
        "enc_kernel_size": 16,
        "enc_num_feats": 512,
        "msk_kernel_size": 3,
        "msk_num_feats": 128,
        "msk_num_hidden_feats": 512,
        "msk_num_layers": 8,
        "msk_num_stacks": 3,
    }
    assert model.sources == ["speaker1", "speaker2"]
    assert (model.samplerate, model.audio_channels, model.residual) == (8000, 1, None)
    assert model.recipe.normalization == "none"
    assert isinstance(model, SeparationModel)


@pytest.mark.parametrize("length", [4000, 4001, 4003, 4006])
def test_librimix_forward_any_length(length: int) -> None:
    model = build_librimix_conv_tasnet({**TINY_LIBRIMIX, "num_sources": 3}).eval()
    state = model.state_dict()
    args = infer_librimix_conv_tasnet_args(state, msk_num_layers=3)
    assert args == {**TINY_LIBRIMIX, "num_sources": 3, "msk_kernel_size": 3}
    mix = torch.randn(2, 1, length, generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        both, first = model(mix), model(mix[:1])
    assert both.shape == (2, 3, 1, length)
    torch.testing.assert_close(both[:1], first, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="mono"):
        model(torch.zeros(1, 2, length))


def test_librimix_bad_inputs() -> None:
    with pytest.raises(ModelError, match="unknown"):
        build_librimix_conv_tasnet({"N": 3})
    with pytest.raises(ModelError, match="odd"):
        build_librimix_conv_tasnet({**TINY_LIBRIMIX, "msk_kernel_size": 4})
    state = build_librimix_conv_tasnet(TINY_LIBRIMIX).state_dict()
    with pytest.raises(ModelError, match="multiple"):
        infer_librimix_conv_tasnet_args(state, msk_num_layers=4)
    with pytest.raises(ModelError, match="missing"):
        infer_librimix_conv_tasnet_args(
            {k: v for k, v in state.items() if "skip_out.bias" not in k}, msk_num_layers=3
        )


def test_librimix_matches_torchaudio() -> None:
    """torchaudio's ConvTasNet output, frozen by tools/make_librimix_fixture.py (torchaudio
    cannot be installed beside the CPU torch): same weights, same input, same output."""
    import json

    folder = Path(__file__).resolve().parents[1] / "data" / "librimix"
    kwargs = json.loads((folder / "kwargs.json").read_text())
    state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    assert infer_librimix_conv_tasnet_args(state, msk_num_layers=kwargs["msk_num_layers"]) \
        == kwargs
    model = build_librimix_conv_tasnet(kwargs).eval()
    model.load_state_dict(state, strict=True)
    mix = torch.from_numpy(np.load(folder / "mixture.npy"))
    expected = np.load(folder / "expected.npy")
    with torch.no_grad():
        output = model(mix)[:, :, 0].numpy()
    assert output.shape == expected.shape == (1, 2, 8003)
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-4)
