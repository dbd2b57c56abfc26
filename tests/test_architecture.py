"""The layering rules of docs/architecture.md, checked on the source: no import cycle
in stemsplit/, every import goes down the layers (or stays in its own), and the CLI
reaches the library only through `api` and `errors`. Lazy imports and typing-only
imports count: a function-level import is still a dependency."""

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
                submodules = [f"{node.module}.{a.name}" for a in node.names]
                # `from pkg import module` imports the module; `from pkg import name`, pkg
                names_only = [m for m in submodules if m not in modules]
                targets = submodules + ([node.module] if names_only else [])
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


# Layers, bottom first: a module may import its own layer and those below, never above.
LAYERS: list[tuple[str, ...]] = [
    # leaves: facts, errors, options and the tables they check against
    ("stemsplit.errors", "stemsplit.capability", "stemsplit.atomic", "stemsplit.version",
     "stemsplit.allocator", "stemsplit.audio.formats", "stemsplit.options"),
    ("stemsplit.models",),  # networks: pure tensor code
    ("stemsplit.audio",),  # decode, encode, blocks, tags, stem files
    ("stemsplit.zoo",),  # cards, downloads, checkpoints -> loaded models
    ("stemsplit.engine",),  # chunks, runners, ensembles, pipelines
    # one run decided: plan, request, paths; and the readers of finished stems
    ("stemsplit.plan", "stemsplit.recipes", "stemsplit.request", "stemsplit.layout",
     "stemsplit.metrics", "stemsplit.community_metrics", "stemsplit.stem_folders",
     "stemsplit.evaluate", "stemsplit.report", "stemsplit.bench"),
    ("stemsplit.separator", "stemsplit.startup", "stemsplit.streaming"),  # one plan, run
    ("stemsplit.batch", "stemsplit.dry_run"),  # many tracks, executors, object storage
    ("stemsplit.api",),
    ("stemsplit.cli", "stemsplit.__main__", "stemsplit"),
]


def _layer(module: str) -> int:
    """The layer of `module`: its longest listed prefix (a package or the module)."""
    best = (-1, -1)
    for index, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                best = max(best, (len(name), index))
    assert best[1] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def test_every_module_has_a_layer() -> None:
    for module in _imports():
        _layer(module)


def test_no_import_runs_back_up() -> None:
    upward = [f"{module} -> {target}" for module, targets in sorted(_imports().items())
              for target in sorted(targets) if _layer(target) > _layer(module)]  # fmt: skip
    assert not upward, "imports running back up the layers:\n" + "\n".join(upward)


def test_the_layer_rule_catches_an_upward_import() -> None:
    assert _layer("stemsplit.models.ops") < _layer("stemsplit.engine.runner")
    assert _layer("stemsplit.audio.formats") < _layer("stemsplit.audio.reader")
    assert _layer("stemsplit.options") < _layer("stemsplit.audio.stem_mp4")
