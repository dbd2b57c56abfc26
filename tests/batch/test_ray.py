"""The Ray executor through the real command: the driver's plan runs on every worker.

One local Ray cluster (2 CPUs) serves the module; each command joins it with
`--ray-address`, so only the workers start per run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from batch_cli import music, read, stemsplit, tiny_demucs_checkpoint, write_audio

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'stemsplit-cli[ray]'")


@pytest.fixture(scope="module")
def cluster():
    """A local cluster's address (its session folder short: Ray's unix sockets need it)."""
    folder = tempfile.mkdtemp(prefix="ssray-", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=folder)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def inputs(folder: Path) -> Path:
    write_audio(folder / "one.wav", music())
    write_audio(folder / "two.flac", music(0.7, offset=7000), "PCM_24")
    return folder


def files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_output(local: Path, remote: Path) -> dict[str, Path]:
    """The same files (names, records' settings) and samples within 1e-6."""
    mine, theirs = files(local), files(remote)
    assert sorted(theirs) == sorted(mine)
    for name, path in mine.items():
        if name.endswith(".json"):
            ours, other = (json.loads(p.read_text()) for p in (path, theirs[name]))
            for key in ("models", "model_files", "settings", "stems", "chain"):
                assert other.get(key) == ours.get(key), key
        else:
            reference = read(path)
            got = read(theirs[name])
            assert got.shape == reference.shape
            assert np.abs(got - reference).max() <= 1e-6, name
    return mine


def run_both(tmp_path: Path, address: str, *args: str | Path) -> dict[str, Path]:
    source = inputs(tmp_path / "in")
    common = [source, *args, "--bit-depth", "float32", "--json"]
    local = stemsplit(*common, "-o", tmp_path / "local")
    assert local.returncode == 0, local.stderr
    remote = stemsplit(*common, "-o", tmp_path / "ray", "--executor", "ray",
                       "--ray-address", address, "--ray-workers", "2")  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert {t["status"] for t in json.loads(remote.stdout)["tracks"]} == {"done"}
    return assert_same_output(tmp_path / "local", tmp_path / "ray")


def test_two_step_recipe_with_residual_runs_the_recipe_on_ray(cluster, tiny_model, tmp_path):
    second = tiny_demucs_checkpoint(tmp_path / "models" / "second.th", seed=1)
    recipe = tmp_path / "chain.toml"
    recipe.write_text(f"""
residual = {{ name = "rest", of = ["drums", "bass", "lead"] }}

[[steps]]
name = "first"
checkpoint = "{tiny_model}"
keep = {{ drums = "drums", bass = "bass" }}

[[steps]]
name = "second"
input = "first.vocals"
checkpoint = "{second}"
keep = {{ vocals = "lead" }}
""")
    written = run_both(tmp_path, cluster, "--recipe", recipe)
    stems = {Path(name).name for name in written if name.endswith(".wav")}
    assert stems == {"drums.wav", "bass.wav", "lead.wav", "rest.wav"}  # the recipe's, not htdemucs'
    assert sum(name.endswith(".wav") for name in written) == 8


def test_two_stems_keep_writes_only_the_kept_stem_on_ray(cluster, tiny_model, tmp_path):
    written = run_both(tmp_path, cluster, "--checkpoint", tiny_model, "--two-stems", "vocals",
                       "--keep", "vocals")  # fmt: skip
    assert sorted(Path(name).name for name in written if name.endswith(".wav")) == [
        "vocals.wav", "vocals.wav"]


def test_a_worker_no_node_can_hold_is_refused_at_once(cluster, tiny_model, tmp_path):
    source = inputs(tmp_path / "in")
    result = stemsplit(source, "--checkpoint", tiny_model, "-o", tmp_path / "out",
                       "--executor", "ray", "--ray-address", cluster,
                       "--gpus-per-worker", "0.5", timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith("error: --gpus-per-worker 0.5: the Ray cluster has 0 "
                                          "GPUs in all, so no worker could start")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.wav"))


def test_cuda_without_a_gpu_per_worker_is_a_usage_error(tiny_model, tmp_path):
    write_audio(tmp_path / "a.wav", music(0.1))
    result = stemsplit(tmp_path / "a.wav", "--checkpoint", tiny_model, "--executor", "ray",
                       "--device", "cuda", "-o", tmp_path / "out")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("error: --device cuda: a Ray worker sees a GPU only when it "
                                     "holds one: add --gpus-per-worker 1 (0.5: two workers per "
                                     "GPU)")


@pytest.mark.parametrize("flag, value", [("--gpus-per-worker", "-1"), ("--cpus-per-worker", "0"),
                                         ("--retries", "-1")])
def test_bad_worker_options_are_usage_errors(flag, value, tmp_path):
    write_audio(tmp_path / "a.wav", music(0.1))
    result = stemsplit(tmp_path / "a.wav", "--executor", "ray", flag, value)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {flag} must be")
