"""Safe readers of upstream checkpoint formats: data in, code never run."""

from __future__ import annotations

import io
import json
import os
import pickle
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import zoo_checkpoints as zc

from stemsplit.errors import ModelError, UnsafeCheckpoint
from stemsplit.models import registry
from stemsplit.zoo import checkpoints
from stemsplit.zoo.safe_yaml import load_yaml, load_yaml_text


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_demucs_package_reads_as_plain_data(tmp_path: Path) -> None:
    pytest.importorskip("demucs")
    model = zc.demucs_model("HTDemucs")
    path = zc.save_bytes(tmp_path / "955717e8-00000000.th", zc.demucs_package_bytes(model))
    package = checkpoints.read_demucs_package(path)
    assert package.klass == "HTDemucs"
    assert package.args == []
    assert package.kwargs == {"sources": zc.SOURCES, **zc.TINY_HTDEMUCS}
    assert package.training_args == {"dset": {"name": "tiny"}, "epochs": 1}
    reference = model.state_dict()
    assert set(package.state) == set(reference)
    for key, value in package.state.items():
        assert value.dtype == torch.float16  # as the published files
        torch.testing.assert_close(value, reference[key].half(), rtol=0, atol=0, equal_nan=True)


def test_fractions_and_all_demucs_classes_are_allowed(tmp_path: Path) -> None:
    pytest.importorskip("demucs")
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    for klass in (HTDemucs, HDemucs, Demucs):
        path = tmp_path / f"{klass.__name__}.th"
        payload = {"klass": klass, "args": [], "kwargs": {"segment": Fraction(39, 5)}, "state": {}}
        torch.save(payload, path)
        loaded = checkpoints.read_torch_file(path)
        assert loaded["klass"].name == klass.__name__
        assert loaded["kwargs"]["segment"] == Fraction(39, 5)


def test_unknown_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.th"
    torch.save({"klass": io.BytesIO, "args": [], "kwargs": {}, "state": {}}, path)
    with pytest.raises(UnsafeCheckpoint, match="io.BytesIO|_io.BytesIO"):
        checkpoints.read_torch_file(path)


@pytest.mark.parametrize("layout", ["torch-zip", "raw-pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    if layout == "torch-zip":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Evil(marker)))
    for reader in (checkpoints.read_torch_file, checkpoints.read_state_dict):
        with pytest.raises(UnsafeCheckpoint, match="refused"):
            reader(path)
    assert not marker.exists()


def test_yaml_with_python_object_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    path = tmp_path / "evil.yaml"
    path.write_text(text)
    with pytest.raises(UnsafeCheckpoint):
        load_yaml(path)
    with pytest.raises(UnsafeCheckpoint):
        load_yaml_text("a: !!python/object:collections.OrderedDict {}")
    assert not marker.exists()
    assert load_yaml_text("t: !!python/tuple [1, 2]") == {"t": (1, 2)}


def test_truncated_and_garbage_files_are_model_errors(tmp_path: Path) -> None:
    payload = io.BytesIO()
    torch.save({"w": torch.randn(1000)}, payload)
    truncated = zc.save_bytes(tmp_path / "cut.th", payload.getvalue()[:-2000])
    garbage = zc.save_bytes(tmp_path / "junk.th", b"not a checkpoint at all" * 10)
    for path in (truncated, garbage):
        with pytest.raises(ModelError, match="corrupt|not a readable") as info:
            checkpoints.read_state_dict(path)
        assert not isinstance(info.value, UnsafeCheckpoint)
    with pytest.raises(ModelError, match="does not exist"):
        checkpoints.read_torch_file(tmp_path / "absent.th")
    with pytest.raises(ModelError, match="safetensors"):
        checkpoints.read_safetensors(zc.save_bytes(tmp_path / "x.safetensors", b"\x10" * 12))


def test_msst_state_dict_is_unwrapped(tmp_path: Path) -> None:
    state = {"band_split.0.weight": torch.randn(3, 2), "final.bias": torch.randn(4)}
    for label, payload in {
        "plain": state,
        "nested": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 7},
        "model_state_dict": {"model_state_dict": state, "optimizer": {"lr": 0.1}},
    }.items():
        path = tmp_path / f"{label}.ckpt"
        torch.save(payload, path)
        loaded = checkpoints.read_state_dict(path)
        assert set(loaded) == set(state), label
        for key, value in state.items():
            assert torch.equal(loaded[key], value)
    torch.save({"epoch": 3}, tmp_path / "empty.ckpt")
    with pytest.raises(ModelError, match="no named tensors|no state_dict"):
        checkpoints.read_state_dict(tmp_path / "empty.ckpt")


def test_safetensors_reader_matches_the_library(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    tensors = {
        "a": torch.randn(3, 4),
        "b": torch.randn(5).half(),
        "c": torch.arange(6, dtype=torch.int64).reshape(2, 3),
        "d": torch.randn(2, 2).to(torch.bfloat16),
        "e": torch.zeros(0, 3),
    }
    kwargs = {
        "sources": ["a", "b"],
        "segment": {"_type": "fraction", "numerator": 39, "denominator": 5},
    }
    metadata = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)}
    path = tmp_path / "m.safetensors"
    safetensors_torch.save_file(tensors, str(path), metadata=metadata)
    read, meta = checkpoints.read_safetensors(path)
    assert meta == metadata
    for key, value in tensors.items():
        assert read[key].dtype == value.dtype and torch.equal(read[key], value), key
    package = checkpoints.read_demucs_safetensors(path)
    assert package.klass == "HTDemucs"
    assert package.kwargs == {"sources": ["a", "b"], "segment": Fraction(39, 5)}


def test_architecture_detection_helpers(tmp_path: Path) -> None:
    bs = load_yaml_text(zc.TINY_BS_YAML)
    mel = load_yaml_text(zc.TINY_MEL_YAML)
    assert checkpoints.msst_architecture(bs).name == "bs_roformer"
    assert checkpoints.msst_architecture(mel).name == "mel_band_roformer"
    with pytest.raises(ModelError, match="matches no known MSST architecture"):
        checkpoints.msst_architecture({"model": {"dim": 3}})
    tasnet = zc.tasnet_model().state_dict()
    assert registry.recognise_state(tasnet).name == "conv_tasnet"
    assert registry.recognise_state({"final.bias": torch.zeros(1)}) is None
    bag = tmp_path / "bag.yaml"
    bag.write_text("models: ['aa', 'bb']\nweights: [[1., 0.], [0., 1.]]\nsegment: 44\n")
    parsed = checkpoints.read_demucs_bag(bag)
    assert parsed.models == ["aa", "bb"] and parsed.weights == [[1, 0], [0, 1]]
    assert parsed.segment == 44.0


def test_a_rezipped_checkpoint_reads_the_same_tensors(tmp_path: Path) -> None:
    """A checkpoint whose zip entries were compressed (re-zipped by a user or a host) reads
    the same tensors: torch's memory map would hand back the deflated bytes as data."""
    import zipfile

    state = {"weight": torch.randn(300, 7), "steps": torch.arange(50)}
    stored = tmp_path / "stored.ckpt"
    torch.save(state, stored)
    deflated = tmp_path / "deflated.ckpt"
    with zipfile.ZipFile(stored) as source, \
            zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target:  # fmt: skip
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry.filename))
    for path in (stored, deflated):
        loaded = checkpoints.read_torch_file(path)
        assert all(torch.equal(loaded[name], tensor) for name, tensor in state.items()), path
