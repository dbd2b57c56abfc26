"""Plain (click) help with options in named sections: rich's help renderer costs a
tenth of a second of imports, which `stemsplit --help` must not pay."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand

_SECTIONS: dict[str, str] = {}  # help text -> section title


def section(title: str, text: str) -> str:
    """Mark an option's help `text` as belonging to section `title`; returns the text."""
    _SECTIONS[text] = title
    return text


class SectionedCommand(TyperCommand):
    """Options listed under the section their help was marked with, in first-use order."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                argument = (param.metavar or param.name or "", getattr(param, "help", "") or "")
                groups.setdefault("Arguments", []).append(argument)
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                title = _SECTIONS.get(getattr(param, "help", None) or "", "Other")
                groups.setdefault(title, []).append(record)
        for title, rows in groups.items():
            with formatter.section(f"{title} options" if title != "Arguments" else title):
                formatter.write_dl(rows)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        """The epilog as written (examples keep their columns)."""
        if self.epilog:
            formatter.write_paragraph()
            for line in self.epilog.strip("\n").splitlines():
                if line != "\b":
                    formatter.write(f"{'':>{formatter.current_indent}}{line}\n")

    def collect_usage_pieces(self, ctx: Any) -> list[Any]:
        return ["[OPTIONS]", "INPUT..."]
