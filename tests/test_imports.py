"""The packages under utils/ import each other in one direction only: no import cycle between them, nor between
the modules of utils/; and no app (utils/apps/*) imports another: what they share lives outside utils/apps."""
import ast
from pathlib import Path

from tests.conftest import ROOT

UTILS = ROOT / "utils"


def imported_names(file: Path) -> list[str]:
    """The absolute module names `file` imports, at any depth of the file (a function's imports included);
    `from utils.engine import distributed` names utils.engine.distributed too, as the module it may be."""
    names = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def module_name(file: Path) -> str:
    parts = file.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """utils' subpackage (or top module) -> the other ones its files import, at any depth of the file."""
    graph = {}
    for file in UTILS.rglob("*.py"):
        part = file.relative_to(UTILS).parts[0].removesuffix(".py")
        targets = graph.setdefault(part, set())
        for pieces in (name.split(".") for name in imported_names(file)):
            if pieces[0] == "utils" and len(pieces) > 1 and pieces[1] != part:
                targets.add(pieces[1])
    return graph


def module_imports() -> dict[str, set[str]]:
    """Each module under utils/ -> the modules under utils/ it imports (a package: its __init__)."""
    modules = {module_name(file) for file in UTILS.rglob("*.py")}
    return {module_name(file): {name for name in imported_names(file) if name in modules} - {module_name(file)}
            for file in UTILS.rglob("*.py")}


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


def test_no_import_cycle_between_the_modules_of_utils():
    assert find_cycle(module_imports()) is None


def test_no_app_imports_another():
    """utils/apps/* are the actions main.py dispatches to; what two of them share (the network, the splits, the run
    folder) lives outside utils/apps, and --compare receives the train function from main.py."""
    apps = {name: targets for name, targets in module_imports().items() if name.startswith("utils.apps.")}
    assert len(apps) >= 5  # train, evaluate, compare, predict, export: the graph does see them
    assert {name: sorted(t for t in targets if t.startswith("utils.apps")) for name, targets in apps.items()} == \
        dict.fromkeys(apps, [])


def test_the_import_graph_sees_a_function_level_import(tmp_path):
    file = tmp_path / "app.py"
    file.write_text("import os\n\ndef run():\n    from utils.apps.train import train\n    from utils.engine import setup\n")
    assert imported_names(file) == ["os", "utils.apps.train", "utils.apps.train.train", "utils.engine",
                                    "utils.engine.setup"]


def test_the_cycle_finder_names_a_cycle():
    assert find_cycle({"data": {"engine"}, "engine": {"labels", "data"}, "labels": set()}) == ["data", "engine", "data"]
    assert find_cycle({"apps": {"data", "engine"}, "data": {"engine"}, "engine": set()}) is None
