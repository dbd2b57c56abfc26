"""Recipes as declared and as planned: TOML checks (one error naming the step), the
shipped recipes against the zoo's cards, and the chain streaming (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from recipe_cli import long_mixture, two_step_recipe

from stemsplit.errors import UnknownModel, UnknownStem, UsageError
from stemsplit.options import EngineSettings, OutputOptions
from stemsplit.recipes import list_recipes, load_recipe, parse_recipe, plan_recipe


def _plan(recipe):
    return plan_recipe(recipe, EngineSettings(), OutputOptions())


def test_the_shipped_recipes_plan_against_the_cards() -> None:
    shipped = {r.name: r for r in list_recipes()}
    assert {"karaoke", "vocals-dry", "4stem-routed"} <= set(shipped)
    karaoke = _plan(shipped["karaoke"])
    assert karaoke.stems.written == ("instrumental", "lead_vocals", "backing_vocals")
    assert [m.name for m in karaoke.models] == ["mel-roformer-kj", "uvr_mdxnet_kara_2"]
    first, lead = karaoke.recipe.steps
    assert first.feeds == ("vocals",) and lead.input == ("vocals", "vocals")
    assert set(first.plan.stems.written) == {"vocals", "instrumental"}
    dry = _plan(shipped["vocals-dry"])
    assert dry.stems.written == ("instrumental", "vocals", "vocals_reverb")
    routed = _plan(shipped["4stem-routed"])
    assert routed.stems.written == ("drums", "bass", "vocals", "other")
    assert routed.recipe.residual == ("other", ("drums", "bass", "vocals"))
    # the 4-stem model is asked for drums and bass only: vocals come from the vocal model
    assert routed.recipe.steps[0].plan.stems.written == ("drums", "bass")
    assert load_recipe("four-stem-routed").name == "4stem-routed"


def _recipe(*steps: str, extra: str = "") -> str:
    body = "".join(f"[[r.steps]]\n{s}\n" for s in steps)
    return f"[r]\n{extra}\n{body}"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (['name = "a"\nmodel = "htdemucs"\nkeep = ["vocals"]',
          'name = "a"\nmodel = "htdemucs"\nkeep = ["bass"]'], "step 'a': another step"),
        (['name = "a"\nmodel = "htdemucs"\nkeep = ["vocals"]',
          'name = "b"\nmodel = "htdemucs_ft"\nkeep = ["vocals"]'],
         "step 'b': output 'vocals' is already written by step 'a'"),
        (['name = "a"\nkeep = ["vocals"]'], "step 'a': give `model`"),
        (['name = "a"\nmodel = "htdemucs"\nkeep = ["drums"]',
          'name = "b"\nmodel = "htdemucs"\ninput = "b.vocals"\nkeep = { vocals = "v" }'],
         "step 'b': input 'b.vocals' names no earlier step"),
        (['name = "a"\nmodel = "htdemucs"\nkeep = ["drums"]',
          'name = "b"\nmodel = "htdemucs"\ninput = "a"\nkeep = { vocals = "v" }'],
         "step 'b': input 'a': use 'mixture' or STEP.STEM"),
        (['name = "a"\nmodel = "htdemucs"\nkeep = { vocals = "../v" }'], "output name '../v'"),
        (['name = "a"\nmodel = "htdemucs"\nstems = ["vocals"]'], "step 'a': unknown key(s) stems"),
        (['name = "a"\nmodel = "htdemucs"'], "step 'a': keeps no stem and feeds no later step"),
        (['name = "a"\nmodel = "htdemucs"\nensemble = "loudest"\nkeep = ["drums"]'],
         "step 'a': unknown"),
    ],
)
def test_declaration_errors_name_the_step(steps: list[str], message: str) -> None:
    import tomllib

    with pytest.raises(UsageError) as raised:
        parse_recipe("r", tomllib.loads(_recipe(*steps))["r"])
    assert message in str(raised.value) and "recipe 'r'" in str(raised.value)


def test_residual_errors() -> None:
    import tomllib

    one = 'name = "a"\nmodel = "htdemucs"\nkeep = ["drums", "bass"]'
    with pytest.raises(UsageError, match="residual 'other': vocals is not an output"):
        parse_recipe("r", tomllib.loads(_recipe(
            one, extra='residual = { name = "other", of = ["vocals"] }'))["r"])  # fmt: skip
    with pytest.raises(UsageError, match="residual 'drums' is already written"):
        parse_recipe("r", tomllib.loads(_recipe(one, extra='residual = "drums"'))["r"])
    recipe = parse_recipe("r", tomllib.loads(_recipe(one, extra='residual = "rest"'))["r"])
    assert recipe.residual == ("rest", ("drums", "bass"))


def test_planning_errors_name_the_step() -> None:
    import tomllib

    def plan(*steps: str) -> None:
        _plan(parse_recipe("r", tomllib.loads(_recipe(*steps))["r"]))

    with pytest.raises(UnknownModel, match="recipe 'r', step 'b': unknown model 'htdemux'"):
        plan('name = "a"\nmodel = "htdemucs"\nkeep = ["drums"]',
             'name = "b"\nmodel = "htdemux"\nkeep = ["bass"]')
    with pytest.raises(UnknownStem, match=r"recipe 'r', step 'a': unknown stem.*guitar"):
        plan('name = "a"\nmodel = "htdemucs"\nkeep = ["guitar"]')
    # a stem an earlier step lacks is the reading step's fault
    with pytest.raises(UnknownStem, match=r"step 'b': input 'a\.piano'"):
        plan('name = "a"\nmodel = "htdemucs"\nkeep = ["drums"]',
             'name = "b"\nmodel = "htdemucs"\ninput = "a.piano"\nkeep = { vocals = "v" }')


def test_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not valid TOML"):
        (tmp_path / "bad.toml").write_text("[[steps]\n")
        load_recipe(tmp_path / "bad.toml")
    with pytest.raises(UsageError, match="not found"):
        load_recipe(tmp_path / "missing.toml")
    two = tmp_path / "two.toml"
    two.write_text(_recipe('name = "a"\nmodel = "htdemucs"\nkeep = ["drums"]') + "\n" +
                   _recipe('name = "a"\nmodel = "htdemucs"\nkeep = ["bass"]').replace("[r", "[s"))
    with pytest.raises(UsageError, match=r"holds 2 recipes.*:NAME"):
        load_recipe(two)
    assert load_recipe(f"{two}:s").steps[0].keep == {"bass": "bass"}
    # relative checkpoint paths are relative to the recipe file
    (tmp_path / "one.toml").write_text('[[steps]]\ncheckpoint = "m.ckpt"\nkeep = ["vocals"]\n')
    step = load_recipe(tmp_path / "one.toml").steps[0]
    assert step.checkpoint == tmp_path / "m.ckpt" and load_recipe(tmp_path / "one.toml").name == "one"
    with pytest.raises(UsageError, match="unknown recipe 'karoke': did you mean karaoke"):
        load_recipe("karoke")


def test_the_chain_streams_each_step_behind_the_last(tmp_path: Path, monkeypatch) -> None:
    """The second step starts before the first has finished: blocks of the two steps
    interleave, and nothing but the kept stems is left in the output folder."""
    from stemsplit import api
    from stemsplit.engine import chain

    order: list[str] = []
    pump = chain._Node.pump

    def recorded(self) -> bool:
        more = pump(self)
        if more:
            order.append(self.name)
        return more

    monkeypatch.setattr(chain._Node, "pump", recorded)
    mix = long_mixture(tmp_path / "song.wav", 12.0)
    results = api.separate(mix, recipe=two_step_recipe(tmp_path / "two.toml"),
                           out=tmp_path / "out", jobs=0)  # fmt: skip
    assert results[0].status == "done", results[0].error
    assert order.index("second") < len(order) - 1 - order[::-1].index("first"), order
    left = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert left == ["accomp.wav", "backing.wav", "lead.wav", "stemsplit.json"]
