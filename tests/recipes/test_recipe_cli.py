"""`stemsplit song.wav --recipe ...` through the real command: a two-step chain over the
fixture models equals the two steps run by hand, in one process whose peak RSS stays
within the larger step's plus 20%; bad recipes fail before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import label
from recipe_cli import fixture, long_mixture, read, snr_db, stemsplit, two_step_recipe

SECONDS = 20.0  # long enough that the models' chunks, not start-up, shape the memory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The recipe, then its two steps by hand (float32 files, so the hand-made
    intermediate is the exact stem the chain streams), each in its own process."""
    root = tmp_path_factory.mktemp("recipe-runs")
    mix = long_mixture(root / "song.wav", SECONDS)
    recipe = two_step_recipe(root / "two.toml")
    bs, bs_config = fixture("bs_roformer")
    mel, mel_config = fixture("mel_roformer")
    float32 = ("--bit-depth", "float32", "-q")
    chained = stemsplit(mix, "--recipe", recipe, "-o", root / "recipe", *float32)
    assert chained.returncode == 0, chained.stderr
    first = stemsplit(mix, "--checkpoint", bs, "--config", bs_config, "-o", root / "hand1",
                      *float32)  # fmt: skip
    assert first.returncode == 0, first.stderr
    vocals = root / "hand1" / label(bs, bs_config) / "song" / "vocals.wav"
    second = stemsplit(vocals, "--checkpoint", mel, "--config", mel_config, "-o",
                       root / "hand2", *float32)  # fmt: skip
    assert second.returncode == 0, second.stderr
    return {"root": root, "mix": mix, "recipe": chained, "first": first, "second": second,
            "labels": (label(bs, bs_config), label(mel, mel_config))}


def test_a_two_step_recipe_equals_the_steps_run_by_hand(runs: dict) -> None:
    root = runs["root"]
    out = root / "recipe" / "two" / "song"
    pairs = {
        "accomp": root / "hand1" / runs["labels"][0] / "song" / "other.wav",
        "lead": root / "hand2" / runs["labels"][1] / "vocals" / "vocals.wav",
        "backing": root / "hand2" / runs["labels"][1] / "vocals" / "other.wav",
    }
    frames = read(runs["mix"]).shape[0]
    figures = {}
    for name, by_hand in pairs.items():
        ours, theirs = read(out / f"{name}.wav"), read(by_hand)
        assert ours.shape == theirs.shape == (frames, 2), name
        figures[name] = snr_db(theirs, ours)
        assert figures[name] >= 60, (name, figures[name])
    print("recipe vs by hand, SNR dB:", {k: round(v, 1) for k, v in figures.items()})


def test_only_the_kept_stems_are_written(runs: dict) -> None:
    root = runs["root"] / "recipe"
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["two/song/accomp.wav", "two/song/backing.wav", "two/song/lead.wav",
                     "two/song/stemsplit.json"]  # fmt: skip


def test_the_record_describes_the_chain(runs: dict) -> None:
    record = json.loads((runs["root"] / "recipe" / "two" / "song" / "stemsplit.json").read_text())
    steps = record["recipe"]["steps"]
    assert [s["name"] for s in steps] == ["first", "second"]
    assert steps[0]["input"] == "mixture" and steps[1]["input"] == "first.vocals"
    assert steps[0]["feeds"] == {"vocals": ["second"]}
    assert steps[1]["keep"] == {"vocals": "lead", "other": "backing"}
    assert record["settings"]["chain"][1].startswith(f"second: {runs['labels'][1]} on "
                                                     "first.vocals")  # fmt: skip
    assert len(record["model_files"]) == 2


def test_peak_memory_is_that_of_the_larger_step(runs: dict) -> None:
    rss = {k: runs[k].peak_rss_mb for k in ("recipe", "first", "second")}
    print("peak RSS MB:", {k: round(v) for k, v in rss.items()})
    assert rss["recipe"] <= 1.2 * max(rss["first"], rss["second"]), rss


def test_a_rerun_skips_and_a_changed_chain_redoes(runs: dict, tmp_path: Path) -> None:
    root = runs["root"]
    again = stemsplit(runs["mix"], "--recipe", root / "two.toml", "-o", root / "recipe",
                      "--bit-depth", "float32", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["tracks"][0]["status"] == "skipped"
    changed = two_step_recipe(tmp_path / "two.toml").read_text().replace(
        'input = "first.vocals"', 'input = "first.other"')
    (tmp_path / "two.toml").write_text(changed)
    redo = stemsplit(runs["mix"], "--recipe", tmp_path / "two.toml", "-o", root / "recipe",
                     "--bit-depth", "float32", "--json")  # fmt: skip
    assert redo.returncode == 0, redo.stderr
    assert json.loads(redo.stdout)["tracks"][0]["status"] == "done"
    assert "chain" in redo.stderr  # the reason names what changed


def test_a_residual_completes_the_mixture(tmp_path: Path) -> None:
    """Routing: vocals from one model, `rest` from another, `remainder` = the mixture
    minus both; the three sum to the mixture."""
    bs, bs_config = fixture("bs_roformer")
    mel, mel_config = fixture("mel_roformer")
    recipe = tmp_path / "routed.toml"
    recipe.write_text(f"""
[routed]
residual = {{ name = "remainder", of = ["vocals", "rest"] }}
[[routed.steps]]
name = "a"
checkpoint = "{bs}"
config = "{bs_config}"
keep = ["vocals"]
[[routed.steps]]
name = "b"
checkpoint = "{mel}"
config = "{mel_config}"
keep = {{ other = "rest" }}
""")
    mix = long_mixture(tmp_path / "song.wav", 3.0)
    run = stemsplit(mix, "--recipe", recipe, "-o", tmp_path / "out", "--bit-depth", "float32",
                    "-q", "--report")  # fmt: skip
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out" / "routed" / "song"
    total = sum(read(out / f"{s}.wav") for s in ("vocals", "rest", "remainder"))
    assert np.abs(total - read(mix)).max() < 1e-5
    page = (out / "report.html").read_text()  # the report shows the chain, a row per step
    assert f"{label(mel, mel_config)} on mixture -> other as rest" in page
    assert "mixture - vocals - rest" in page


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ('model = "htdemucs"\nkeep = ["lead_guitar"]', "step 'split': unknown stem(s) lead_guitar"),
        ('model = "htdemucz"\nkeep = ["bass"]', "step 'split': unknown model 'htdemucz'"),
        ('model = "htdemucs"\ninput = "nowhere.vocals"\nkeep = ["bass"]',
         "step 'split': input 'nowhere.vocals' names no earlier step"),
    ],
)
def test_a_bad_recipe_fails_before_any_work(tmp_path: Path, step: str, expected: str) -> None:
    recipe = tmp_path / "bad.toml"
    recipe.write_text(f'[bad]\n[[bad.steps]]\nname = "vocals"\nmodel = "htdemucs"\n'
                      f'keep = ["drums"]\n[[bad.steps]]\nname = "split"\n{step}\n')  # fmt: skip
    song = tmp_path / "song.wav"
    song.write_bytes(b"not even audio: nothing may be read before the plan is checked")
    run = stemsplit(song, "--recipe", recipe, "-o", tmp_path / "out",
                    "--model-dir", tmp_path / "models", "--offline")  # fmt: skip
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert "recipe 'bad'" in lines[0] and expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()


def test_a_missing_stem_of_a_checkpoint_step_names_the_step(tmp_path: Path) -> None:
    recipe = two_step_recipe(tmp_path / "two.toml").read_text().replace(
        'input = "first.vocals"', 'input = "first.drums"')
    (tmp_path / "two.toml").write_text(recipe)
    song = long_mixture(tmp_path / "song.wav", 1.0)
    run = stemsplit(song, "--recipe", tmp_path / "two.toml", "-o", tmp_path / "out")
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().count("\n") == 0 and "step 'second'" in run.stderr, run.stderr
    assert "input 'first.drums'" in run.stderr and not (tmp_path / "out").exists()


def test_recipe_and_model_options_contradict(tmp_path: Path) -> None:
    run = stemsplit(tmp_path / "song.wav", "--recipe", "karaoke", "-m", "htdemucs")
    assert run.returncode == 2
    assert "--recipe and -m/--model contradict" in run.stderr


def test_recipes_lists_and_shows_the_shipped_ones() -> None:
    listed = stemsplit("recipes", "--json")
    assert listed.returncode == 0, listed.stderr
    names = [r["name"] for r in json.loads(listed.stdout)]
    assert {"karaoke", "vocals-dry", "4stem-routed"} <= set(names)
    shown = stemsplit("recipes", "info", "karaoke")
    assert shown.returncode == 0, shown.stderr
    assert "lead: uvr_mdxnet_kara_2 on vocals.vocals" in shown.stdout
    unknown = stemsplit("recipes", "info", "karaokee")
    assert unknown.returncode == 2 and "did you mean karaoke" in unknown.stderr


def test_a_chain_at_another_output_rate_equals_the_steps_by_hand(tmp_path: Path) -> None:
    """`--samplerate 48000` with 44.1 kHz models: the intermediate stem is at 48 kHz, as the
    hand-made file is, and is resampled to the second model's rate on its way in."""
    bs, bs_config = fixture("bs_roformer")
    mel, mel_config = fixture("mel_roformer")
    mix = long_mixture(tmp_path / "song.wav", 3.0)
    common = ("--bit-depth", "float32", "-q", "--samplerate", "48000")
    runs = [
        stemsplit(mix, "--recipe", two_step_recipe(tmp_path / "two.toml"), "-o",
                  tmp_path / "r", *common),
        stemsplit(mix, "--checkpoint", bs, "--config", bs_config, "-o", tmp_path / "h1", *common),
        stemsplit(tmp_path / "h1" / label(bs, bs_config) / "song" / "vocals.wav", "--checkpoint", mel,
                  "--config", mel_config, "-o", tmp_path / "h2", *common),
    ]  # fmt: skip
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    ours = read(tmp_path / "r" / "two" / "song" / "lead.wav")
    theirs = read(tmp_path / "h2" / label(mel, mel_config) / "vocals" / "vocals.wav")
    assert ours.shape == theirs.shape == (round(read(mix).shape[0] * 48000 / 44100), 2)
    assert snr_db(theirs, ours) >= 60
