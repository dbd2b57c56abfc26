"""Plain (click) help with options in named sections: rich's help renderer costs a
tenth of a second of imports, which `stemsplit --help` must not pay."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

_SECTIONS: dict[str, str] = {}  # help text -> section title


def section(title: str, text: str) -> str:
    """Mark an option's help `text` as belonging to section `title`; returns the text."""
    _SECTIONS[text] = title
    return text


def _metavar(param: Any) -> str:
    """An argument's name in help: its metavar or NAME, `...` when it takes several."""
    name = param.metavar or (param.name or "").upper()
    return name + "..." if param.nargs != 1 and not name.endswith("...") else name


def _record(param: Any, ctx: Any) -> tuple[str, str] | None:
    """(names, help) as click writes them: `--mixture PATH`, `--json`, `-m, --model TEXT`
    (typer's own names add `<path>`/`<list[Path]>` tags and `{NAME}` braces); the help
    text keeps typer's `[default: ...]`."""
    if getattr(param, "hidden", False):
        return None
    if param.param_type_name == "argument":
        return _metavar(param), getattr(param, "help", None) or ""
    record = param.get_help_record(ctx)
    if record is None:
        return None
    text = record[1]
    names = ", ".join(param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(param.secondary_opts)
    if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
        names += " " + (param.metavar or _type_name(param, ctx))
    return names, text


def _type_name(param: Any, ctx: Any) -> str:
    """PATH, TEXT, INTEGER... from typer's `<path>`, `<str>`, `<list[int]>` labels."""
    label = str(param.display_type(ctx)).strip("<>").removesuffix("...")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    return {"str": "TEXT", "int": "INTEGER", "float": "NUMBER"}.get(label, label.upper())


class PlainCommand(TyperCommand):
    """Click's plain help: `[OPTIONS] FOLDER` usage, arguments and options by name."""

    def collect_usage_pieces(self, ctx: Any) -> list[Any]:
        arguments = [p for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [self.options_metavar or "[OPTIONS]", *map(_metavar, arguments)]

    def section_of(self, param: Any) -> str:
        return "Arguments" if param.param_type_name == "argument" else "Options"

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _write_params(self.get_params(ctx), ctx, formatter, self.section_of)


class PlainGroup(TyperGroup):
    """A command group (`stemsplit models`) whose own options read as PlainCommand's."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _write_params(self.get_params(ctx), ctx, formatter, lambda param: "Options")
        self.format_commands(ctx, formatter)


def _write_params(params: list[Any], ctx: Any, formatter: Any, section_of: Any) -> None:
    groups: dict[str, list[tuple[str, str]]] = {}
    for param in params:
        record = _record(param, ctx)
        if record is not None:
            groups.setdefault(section_of(param), []).append(record)
    for title, rows in groups.items():
        with formatter.section(title):
            formatter.write_dl(rows)


class SectionedCommand(PlainCommand):
    """Options listed under the section their help was marked with, in first-use order."""

    def section_of(self, param: Any) -> str:
        if param.param_type_name == "argument":
            return "Arguments"
        return f"{_SECTIONS.get(getattr(param, 'help', None) or '', 'Other')} options"

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        """The epilog as written (examples keep their columns)."""
        if self.epilog:
            formatter.write_paragraph()
            for line in self.epilog.strip("\n").splitlines():
                if line != "\b":
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")

