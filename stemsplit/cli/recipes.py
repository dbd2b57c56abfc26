"""`stemsplit recipes`: list the shipped recipes; `stemsplit recipes info NAME|FILE`.

Recipes chain and route separations (`stemsplit song.wav --recipe karaoke`); see
`stemsplit.recipes`. Only parses, calls `stemsplit.api` and renders.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stemsplit.cli import app, common
from stemsplit.cli.common import Json, print_json, run_guarded
from stemsplit.cli.help import PlainCommand, PlainGroup

recipes_app = typer.Typer(
    cls=PlainGroup,
    help="List the shipped recipes (chained and routed separations); `info NAME` shows one.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(recipes_app, name="recipes")


def _api() -> Any:
    import stemsplit.api as api

    return api


@recipes_app.callback()
def list_recipes(ctx: typer.Context, json: Json = False) -> None:
    """List the shipped recipes: name, outputs, steps."""
    if ctx.invoked_subcommand is not None:
        return
    recipes = run_guarded(_api().list_recipes)
    if json:
        print_json(recipes)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("recipe", "outputs", "steps"):
        table.add_column(column, overflow="fold")
    for recipe in recipes:
        steps = ", ".join(f"{s['name']}: {s['model']}" for s in recipe["steps"])
        table.add_row(escape(recipe["name"]), escape(", ".join(recipe["outputs"])), escape(steps))
    common.out_console.print(table)
    common.out_console.print("`stemsplit recipes info NAME` shows one; "
                             "`stemsplit song.wav --recipe NAME` runs it.")  # fmt: skip


@recipes_app.command("info", cls=PlainCommand)
def info(
    name: Annotated[str, typer.Argument(metavar="NAME|FILE", help="A shipped recipe or a file.")],
    json: Json = False,
) -> None:
    """One recipe, checked against the zoo: steps, models, inputs, outputs, chain."""
    data = run_guarded(_api().recipe_info, name)
    if json:
        print_json(data)
        return
    from rich.markup import escape

    out = common.out_console
    described = f": {escape(data['description'])}" if data["description"] else ""
    out.print(f"[bold]{escape(data['name'])}[/]{described}", soft_wrap=True)
    if data["why"]:
        out.print(f"why: {escape(data['why'])}", soft_wrap=True)
    out.print(f"outputs: {escape(', '.join(data['outputs']))}")
    out.print("steps:")
    for line in data["chain"]:
        out.print(f"  {escape(line)}", soft_wrap=True)
