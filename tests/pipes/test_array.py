"""numpy in, numpy out: `separate_array` and `Separator.stream` against the CLI's files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from e2e_cli import stemsplit
from parity import snr_db
from pipe_music import RATE

from stemsplit import api


@pytest.fixture(scope="module")
def cli_stems(tiny_model, music, tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("array-cli")
    path = folder / "mix.wav"
    soundfile.write(path, music, RATE, subtype="FLOAT")
    result = stemsplit(path, "--checkpoint", tiny_model, "-o", folder / "out", "-q",
                       "--bit-depth", "float32", "--clip", "none")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {p.stem: soundfile.read(p, dtype="float32", always_2d=True)[0].T
            for p in folder.glob("out/*/mix/*.wav")}  # fmt: skip


def test_separate_array_equals_the_cli(tiny_model, music, cli_stems) -> None:
    stems = api.separate_array(music.T, RATE, checkpoint=tiny_model)
    assert sorted(stems) == sorted(cli_stems) == ["bass", "drums", "other", "vocals"]
    for name, stem in stems.items():
        assert stem.dtype == np.float32 and stem.shape == music.T.shape
        assert np.max(np.abs(stem - cli_stems[name])) <= 1e-6, name


def test_torch_tensor_in_and_options(tiny_model, music, cli_stems) -> None:
    torch = pytest.importorskip("torch")
    stems = api.separate_array(torch.from_numpy(music.T.copy()), RATE, checkpoint=tiny_model,
                               two_stems="vocals", keep="no_vocals")  # fmt: skip
    assert list(stems) == ["no_vocals"]
    np.testing.assert_allclose(stems["no_vocals"], music.T - cli_stems["vocals"], atol=1e-5)


def test_shapes_follow_the_input(tiny_model, music) -> None:
    mono = music.mean(axis=1)
    flat = api.separate_array(mono, RATE, checkpoint=tiny_model, stems=["bass"])
    column = api.separate_array(mono[None], RATE, checkpoint=tiny_model, stems=["bass"])
    assert flat["bass"].shape == mono.shape and column["bass"].shape == (1, mono.size)
    np.testing.assert_array_equal(flat["bass"], column["bass"][0])
    hi = api.separate_array(music.T, 48000, checkpoint=tiny_model, stems=["bass"])
    assert hi["bass"].shape == music.T.shape  # another rate: resampled in and out
    with pytest.raises(api.StemsplitError, match="channels, samples"):
        api.separate_array(music, RATE, checkpoint=tiny_model)


def test_stream_yields_before_the_input_ends(roformer, music) -> None:
    """`Separator.stream` reads blocks only as chunks need them and yields stems while
    blocks remain; for a model without track statistics it equals `separate_array`."""
    checkpoint, config = roformer
    separator = api.plan_run(api.build_request(checkpoint=checkpoint, config=config))
    whole = separator.separate_array(music.T, RATE)
    consumed = []

    def blocks():
        for start in range(0, music.shape[0], 4410):
            consumed.append(start)
            yield music[start : start + 4410].T

    parts: dict[str, list[np.ndarray]] = {stem: [] for stem in whole}
    consumed_at_first = None
    for named in separator.stream(blocks(), RATE):
        if consumed_at_first is None:
            consumed_at_first = len(consumed)
        for stem, block in named.items():
            parts[stem].append(block)
    assert consumed_at_first < len(consumed) / 2
    for stem, blocks_ in parts.items():
        live = np.concatenate(blocks_, axis=-1)
        assert live.shape == whole[stem].shape
        assert snr_db(whole[stem], live) >= 60


def test_stream_demucs_is_close(tiny_model, music, cli_stems) -> None:
    separator = api.plan_run(api.build_request(checkpoint=tiny_model, stems=["vocals"]))
    live = np.concatenate([b["vocals"] for b in separator.stream(
        (music[s : s + 10000].T for s in range(0, len(music), 10000)), RATE)], axis=-1)  # fmt: skip
    assert live.shape == cli_stems["vocals"].shape
    assert snr_db(cli_stems["vocals"], live) >= 40


def test_empty_array(tiny_model) -> None:
    stems = api.separate_array(np.zeros((2, 0), np.float32), RATE, checkpoint=tiny_model)
    assert all(s.shape == (2, 0) for s in stems.values())


def test_unknown_option_is_a_usage_error(tiny_model) -> None:
    with pytest.raises(api.StemsplitError, match="unknown option"):
        api.separate_array(np.zeros((2, 10), np.float32), RATE, checkpoint=tiny_model,
                           colour="blue")  # fmt: skip
