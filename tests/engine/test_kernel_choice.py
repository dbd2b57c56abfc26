"""The fp32 kernels are chosen by measuring on this CPU, once, and kept on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_run import stemsplit
from test_bf16_every_cpu import _model_args

from stemsplit.engine import kernel_cache
from stemsplit.models import kernels
from stemsplit.models.ops import fast_attention, fast_linear

pytestmark = pytest.mark.cpu_paths


@pytest.fixture
def restore_choice() -> Iterator[None]:
    before = kernels.chosen()
    yield
    kernels.use(before)


def test_the_choice_decides_the_kernel(restore_choice: None) -> None:
    generator = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(70, 96, generator=generator), torch.randn(40, 96), torch.randn(40)
    q, k, v = (torch.randn(1, 2, 300, 32, generator=generator) for _ in range(3))
    with torch.inference_mode():
        kernels.use(kernels.KernelChoice("aten", "flash"))
        assert torch.equal(fast_linear(x, w, b), F.linear(x, w, b))
        assert torch.equal(fast_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
        kernels.use(kernels.KernelChoice("onednn", "blocked"))
        onednn = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
        assert torch.equal(fast_linear(x, w, b), onednn)
        blocked = fast_attention(q, k, v)
    flash = F.scaled_dot_product_attention(q, k, v)
    assert not torch.equal(blocked, flash)  # another summation order...
    assert torch.allclose(blocked, flash, atol=1e-5)  # ...of the same attention
    with pytest.raises(ValueError):
        kernels.use(kernels.KernelChoice("mkl", "flash"))


def test_the_rule_stays_unless_the_other_kernel_is_clearly_faster() -> None:
    timings = {"linear_onednn": 10.0, "linear_aten": 9.8}
    assert kernels.faster("linear", kernels.LINEAR_KERNELS, "onednn", timings) == "onednn"
    timings["linear_aten"] = 9.0
    assert kernels.faster("linear", kernels.LINEAR_KERNELS, "onednn", timings) == "aten"


def test_probe_times_both_kernels_and_leaves_the_choice(restore_choice: None) -> None:
    kernels.use(kernels.KernelChoice("aten", "flash"))
    choice = kernel_cache.probe()
    assert set(choice.timings_ms) == {"linear_onednn", "linear_aten", "attention_blocked",
                                      "attention_flash"}  # fmt: skip
    assert all(value > 0 for value in choice.timings_ms.values())
    assert kernels.current() == kernels.KernelChoice("aten", "flash")


def test_the_cli_measures_once_then_reads_the_cache(tmp_path: Path) -> None:
    args, mixture = _model_args("bs_roformer", tmp_path)
    cache = tmp_path / "cache"
    env = {"STEMSPLIT_MODEL_DIR": str(cache)}

    def run(name: str, **extra: str) -> str:
        result = stemsplit(mixture, *args, "-v", "-o", tmp_path / name, env={**env, **extra})
        assert result.returncode == 0, result.stderr
        return result.stderr

    first = run("first")
    table = json.loads((cache / kernel_cache.CACHE_FILE).read_text())
    (key, entry), = table.items()
    assert "torch" in key and "1 threads" in key and len(entry["timings_ms"]) == 4
    # The cache decides the next run: an answer no probe here would give is followed.
    other = {"linear": "aten" if entry["linear"] == "onednn" else "onednn",
             "attention": "flash" if entry["attention"] == "blocked" else "blocked"}
    (cache / kernel_cache.CACHE_FILE).write_text(json.dumps({key: other}))
    second = run("second")
    said = f"linear {other['linear']}, attention {other['attention']} (measured before"
    assert said in " ".join(second.split()) and said not in " ".join(first.split())
    assert "(measured now)" in " ".join(first.split())
    # An unreadable cache is measured again and rewritten; `rules` measures nothing.
    (cache / kernel_cache.CACHE_FILE).write_text("{not json")
    run("third")
    assert key in json.loads((cache / kernel_cache.CACHE_FILE).read_text())
    (cache / kernel_cache.CACHE_FILE).unlink()
    run("fourth", STEMSPLIT_KERNELS="rules")
    assert not (cache / kernel_cache.CACHE_FILE).exists()


def test_an_unknown_kernels_setting_is_one_error_line(tmp_path: Path) -> None:
    args, mixture = _model_args("bs_roformer", tmp_path)
    result = stemsplit(mixture, *args, "-o", tmp_path / "out",
                       env={"STEMSPLIT_KERNELS": "fastest"})  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: STEMSPLIT_KERNELS='fastest': use one of "
                                     "measure, rules")  # fmt: skip
    assert not list(tmp_path.glob("out/**/*.wav"))
