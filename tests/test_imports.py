"""The packages under utils/ import each other in one direction only: no import cycle between them."""
import ast
from pathlib import Path

from tests.conftest import ROOT

UTILS = ROOT / "utils"


def package_imports() -> dict[str, set[str]]:
    """utils' subpackage (or top module) -> the other ones its files import, at any depth of the file."""
    graph = {}
    for file in UTILS.rglob("*.py"):
        part = file.relative_to(UTILS).parts[0].removesuffix(".py")
        targets = graph.setdefault(part, set())
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                pieces = name.split(".")
                if pieces[0] == "utils" and len(pieces) > 1 and pieces[1] != part:
                    targets.add(pieces[1])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as the path that closes it, or None."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        cycle = next(filter(None, (visit(n) for n in sorted(graph.get(node, ())))), None)
        path.pop()
        done.add(node)
        return cycle

    return next(filter(None, (visit(n) for n in sorted(graph))), None)


def test_no_import_cycle_between_the_packages_of_utils():
    assert find_cycle(package_imports()) is None


def test_the_cycle_finder_names_a_cycle():
    assert find_cycle({"data": {"engine"}, "engine": {"labels", "data"}, "labels": set()}) == ["data", "engine", "data"]
    assert find_cycle({"apps": {"data", "engine"}, "data": {"engine"}, "engine": set()}) is None
