"""Freeze torchaudio's Conv-TasNet output as a small fixture (tests/data/librimix/).

torchaudio cannot be installed beside the CPU torch the tests use, so this runs once,
by hand, with torchaudio's pure-Python model code on the path (a `pip install --no-deps
--target DIR torchaudio` whose compiled extensions are not needed for the model):

    PYTHONPATH=DIR python tools/make_librimix_fixture.py

It writes a reduced torchaudio ConvTasNet (random weights, norms and biases moved off
their init), its kwargs, an input and torchaudio's output. Not part of the package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "librimix"
KWARGS = {"num_sources": 2, "enc_kernel_size": 16, "enc_num_feats": 64, "msk_kernel_size": 3,
          "msk_num_feats": 32, "msk_num_hidden_feats": 64, "msk_num_layers": 4,
          "msk_num_stacks": 2}


def main() -> None:
    from torchaudio.models import ConvTasNet

    torch.manual_seed(0)
    model = ConvTasNet(**KWARGS).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    mix = torch.randn(1, 1, 8003, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(mix)
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), OUT / "model.pt")
    np.save(OUT / "mixture.npy", mix.numpy())
    np.save(OUT / "expected.npy", expected.numpy())
    (OUT / "kwargs.json").write_text(json.dumps(KWARGS, indent=1) + "\n")
    print(f"wrote {OUT}: output {tuple(expected.shape)}")


if __name__ == "__main__":
    main()
