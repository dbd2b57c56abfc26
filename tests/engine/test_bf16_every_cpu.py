"""`--precision bf16` through the real CLI on every CPU kind these machines come in.

Each family runs twice in a subprocess, fp32 and bf16, with oneDNN and ATen capped at
AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`): there, as on an AVX2-only
CPU, oneDNN has no bf16 kernels, so bf16 must run through plain torch ops (LSTMs
included). On an AVX2-only CPU the cap changes nothing; on an AVX-512 or AMX one it
takes the AVX2-only paths. bf16 must then agree with the same run's fp32 stems.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from cli_run import stemsplit
from msst_fixture import DATA, mixture_path

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
# The same sum as `evaluate`'s SNR; bf16 (8-bit mantissa) through a random network.
MIN_SNR_DB = 25.0

MSST = {
    "bs_roformer": "bs_roformer_experimental",
    "mel_roformer": "mel_band_roformer_experimental",
    "msst_htdemucs": "htdemucs_small",
    "scnet": "scnet_masked_vocals",
    "mdx23c": "mdx23c_vocals_target",
    "bandit_v2": "bandit_v2_small",
}


def test_the_cap_takes_away_native_bf16() -> None:
    """The capability module reads torch's answers, which honour the cap."""
    code = ("import json; from stemsplit import capability; c = capability.cpu(); "
            "print(json.dumps([c.aten_isa, c.native_bf16, c.avx512, c.describe()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, **AVX2_ONLY})  # fmt: skip
    isa, native_bf16, avx512, line = json.loads(out.stdout)
    assert isa in ("AVX2", "DEFAULT") and not native_bf16 and not avx512
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2" in line


def _model_args(family: str, tmp_path: Path) -> tuple[list[str], Path]:
    """The CLI's model arguments for `family`, and an input file for it."""
    if family == "demucs_th":
        pytest.importorskip("demucs")
        import zoo_checkpoints as zc

        path = zc.save_bytes(tmp_path / "tiny_htdemucs.th",
                             zc.demucs_package_bytes(zc.demucs_model("HTDemucs")))  # fmt: skip
        return ["--checkpoint", str(path)], mixture_path(DATA / MSST["msst_htdemucs"])
    folder = DATA / MSST[family]
    args = ["--checkpoint", str(folder / "model.ckpt"), "--config", str(folder / "config.yaml")]
    return args, mixture_path(folder)


def _stems(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): soundfile.read(str(p), dtype="float32")[0]
            for p in sorted(folder.rglob("*.wav"))}  # fmt: skip


@pytest.mark.parametrize("family", ["demucs_th", *MSST])
def test_bf16_runs_on_an_avx2_only_cpu(family: str, tmp_path: Path) -> None:
    args, mixture = _model_args(family, tmp_path)
    outputs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        result = stemsplit(mixture, *args, "--precision", precision, "-f", "wav",
                           "--bit-depth", "float32", "-o", out, env=AVX2_ONLY)  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs[precision] = _stems(out)
        if precision == "bf16":
            assert "no native bf16 support" in result.stderr  # the one warning, not an error
            assert "Traceback" not in result.stderr
    fp32, bf16 = outputs["fp32"], outputs["bf16"]
    assert fp32 and sorted(fp32) == sorted(bf16)
    for name, reference in fp32.items():
        estimate = bf16[name]
        assert estimate.shape == reference.shape
        error = np.sum((estimate.astype(np.float64) - reference) ** 2)
        snr = 10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / max(error, 1e-30))
        assert snr >= MIN_SNR_DB, (name, snr)
