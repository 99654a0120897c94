"""The layout's rules, read from the source: imports point one way, relay -> bots ->
processors -> agent -> db, with no circles, and platforms do not import each other."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: a room may import itself and the rooms before it.
ROOMS = ("db", "agent", "processors", "bots", "relay")
PLATFORMS = ("bots.slack", "bots.github", "bots.gitlab")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {
        module_name(path): path for room in ROOMS for path in sorted((ROOT / room).rglob("*.py"))
    }


def imported(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The product modules `path` imports, at any depth (TYPE_CHECKING blocks and
    imports inside functions included: a circle is one wherever it hides)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in modules:
                yield name


def graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: set(imported(path, modules)) - {name} for name, path in modules.items()}


def room_of(module: str) -> str:
    return module.split(".")[0]


def test_imports_point_from_relay_down_to_db() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if ROOMS.index(room_of(target)) > ROOMS.index(room_of(module))
    ]
    assert wrong == []


def test_no_platform_imports_another() -> None:
    def platform_of(module: str) -> str | None:
        return next((p for p in PLATFORMS if module == p or module.startswith(p + ".")), None)

    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if platform_of(module) and platform_of(target) not in (None, platform_of(module))
    ]
    assert wrong == []


def test_no_module_imports_itself_round_a_circle() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_rules_see_the_whole_product() -> None:
    # Guards the test itself: a parsing slip must not make every rule pass vacuously.
    edges = graph()
    assert len(edges) > 60
    assert "processors.base" in edges["bots.slack.reply"]
    assert "db.store" in edges["db.jobs"]
