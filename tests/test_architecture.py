"""The layering rules of docs/architecture.md, checked on the source: no import cycle
in stemsplit/, and the CLI reaches the library only through `api` and `errors`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stemsplit"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the stemsplit modules it imports (at any depth: lazy imports count)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            # a package's __init__ importing its own submodules is not a cycle
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_in_the_package() -> None:
    assert _cycle(_imports()) is None, " -> ".join(_cycle(_imports()) or [])


def test_the_walk_finds_a_cycle_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_cli_imports_only_the_api_and_errors() -> None:
    allowed = {"stemsplit", "stemsplit.api", "stemsplit.errors"}
    for module, targets in _imports().items():
        if not module.startswith("stemsplit.cli"):
            continue
        outside = {t for t in targets if not t.startswith("stemsplit.cli")} - allowed
        assert not outside, f"{module} imports {sorted(outside)}"


def test_models_import_nothing_above_them() -> None:
    for module, targets in _imports().items():
        if module.startswith("stemsplit.models"):
            above = {t for t in targets if not t.startswith(("stemsplit.models",
                                                              "stemsplit.errors",
                                                              "stemsplit.capability"))}  # fmt: skip
            assert not above, f"{module} imports {sorted(above)}"
