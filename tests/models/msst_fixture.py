"""The MSST parity fixtures: the held-out ones in tests/data/msst (written by
tools/msst_fixtures*.py from MSST's own code), plus those of a STEMSPLIT_FIXTURES
folder (e.g. ../shared/fixtures) when one is given, and the checks against them: the
forward on the first chunk, demix through the engine, and the real CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from carried import CARRIED, FIXTURES, audio_file, fixture, mixture_of

DATA = Path(__file__).resolve().parents[1] / "data" / "msst"


def held_out(model_types: Iterable[str]) -> list[str]:
    """The held-out fixtures of these MSST model types, by folder name."""
    types = set(model_types)
    return sorted(p.name for p in DATA.glob("*") if (p / "meta.json").is_file()
                  and read_meta(p)["model_type"] in types)  # fmt: skip


def extra(names: Iterable[str]) -> list[str]:
    """Those of `names` that a STEMSPLIT_FIXTURES folder holds (none by default)."""
    return [name for name in names if FIXTURES != CARRIED and fixture(name).is_dir()]


def fixture_folder(name: str) -> Path:
    """A fixture's folder: held out here, or in the STEMSPLIT_FIXTURES folder."""
    folder = DATA / name
    return folder if folder.is_dir() else fixture(name)


def load_fixture(folder: Path, model_type: str | None = None) -> Any:
    """The fixture's `model.ckpt` + `config.yaml` as the loader reads them (a ModelBundle)."""
    from stemsplit.zoo.loader import load_bundle

    return load_bundle(checkpoint=folder / "model.ckpt", config=folder / "config.yaml",
                       model_type=model_type)  # fmt: skip


def read_audio(path: Path) -> np.ndarray:
    """`(channels, frames)` float32."""
    return soundfile.read(str(path), dtype="float32", always_2d=True)[0].T


def read_meta(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "meta.json").read_text())  # type: ignore[no-any-return]


mixture_path = mixture_of  # a fixture's mixture: WAV or 24-bit FLAC


def check_forward(folder: Path, model: Any, min_db: float) -> None:
    """The network's output on the first chunk against MSST's `forward_output.npy`."""
    import torch
    from parity import snr_db

    meta = read_meta(folder)
    assert list(model.sources) == meta["stems"]
    mix = read_audio(mixture_path(folder))
    with torch.inference_mode():
        out = model(torch.from_numpy(mix[:, : meta["chunk_size"]])[None]).numpy()
    expected = np.load(folder / "forward_output.npy")
    assert out.shape == expected.shape
    assert snr_db(expected, out) >= min_db


def check_demix(folder: Path, bundle: Any, min_db: float) -> None:
    """Every stem of the engine's demix against MSST's `demix/<stem>`, exact length."""
    from parity import snr_db

    from stemsplit.engine.pipeline import bundle_stream
    from stemsplit.engine.runner import EngineSettings
    from stemsplit.engine.source import ArraySource

    (model,) = bundle.members
    assert (model.recipe.normalization == "track-mean-std") == read_meta(folder).get(
        "normalize", False
    )
    mix = read_audio(mixture_path(folder))
    blocks = bundle_stream(bundle, ArraySource(mix, model.samplerate), set(model.sources),
                           EngineSettings(), {})  # fmt: skip
    out = np.concatenate(list(blocks), axis=-1)
    assert out.shape == (len(model.sources), mix.shape[0], mix.shape[-1])
    for index, stem in enumerate(model.sources):
        expected = read_audio(audio_file(folder / "demix", stem))
        assert snr_db(expected, out[index]) >= min_db, stem


def check_cli(folder: Path, tmp_path: Path, min_db: float, *options: str) -> None:
    """The real command (`--checkpoint --config`, the architecture recognised from the
    files unless `options` name it) against MSST's demix; a one-target config's
    residual against the mixture minus the target."""
    from e2e_cli import stemsplit
    from parity import snr_db

    from stemsplit.zoo.safe_yaml import load_yaml

    mixture = mixture_path(folder)
    result = stemsplit(mixture, "--checkpoint", folder / "model.ckpt", "--config",
                       folder / "config.yaml", "--bit-depth", "float32", "--clip", "none",
                       "-o", tmp_path, "--json", *options)  # fmt: skip
    # random networks peak above 1.0 where MSST writes float without clipping
    assert result.returncode == 0, result.stderr
    (track,) = json.loads(result.stdout)["tracks"]
    assert track["status"] == "done", track
    written = {stem: Path(path) for stem, path in track["stems"].items()}
    config = load_yaml(folder / "config.yaml")
    stems = read_meta(folder)["stems"]
    references = {s: read_audio(audio_file(folder / "demix", s)) for s in stems}
    mix = read_audio(mixture)
    target = config["training"].get("target_instrument")
    if target:
        residual = next(s for s in config["training"]["instruments"] if s != target)
        references[residual] = mix - references[target]
    assert sorted(written) == sorted(references)
    for stem, expected in references.items():
        actual = read_audio(written[stem])
        assert actual.shape == mix.shape, stem
        assert snr_db(expected, actual) >= min_db, stem
