"""The hard lines of the architecture: the domain package never imports Prefect; tasks and flows never import
the CLI shell; no import cycle anywhere in driftline, tasks or flows (imports inside functions included)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import driftline
import flows
import tasks

PACKAGE = Path(driftline.__file__).parent
DOMAIN_MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "cli" not in path.relative_to(PACKAGE).parts)
ROOTS = [PACKAGE, Path(tasks.__file__).parent, Path(flows.__file__).parent]


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_domain_modules_exist() -> None:
    assert {"store.py", "layout.py", "settings.py"} <= {p.name for p in DOMAIN_MODULES}


def test_no_domain_module_imports_prefect_flows_or_tasks() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(_imported_roots(path) & {"prefect", "flows", "tasks"})
        for path in DOMAIN_MODULES
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_domain_module_does_not_load_prefect() -> None:
    """Catches transitive imports too (a domain module importing a library that imports Prefect)."""
    modules = [
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for path in DOMAIN_MODULES
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


# --------------------------------------------------------------------------------------------- import graph
def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")


def _modules(roots: Iterable[Path]) -> dict[str, Path]:
    return {_module_name(path, root): path for root in roots for path in sorted(root.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> Iterable[tuple[str, list[str]]]:
    """(imported module, names) of every import that can run: at module level or inside a function or method;
    imports under ``if TYPE_CHECKING:`` never run and are skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (item for child in node.orelse for item in _runtime_imports(child, module, is_package))
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base, [alias.name for alias in node.names]
        yield from _runtime_imports(node, module, is_package)


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for target, names in _runtime_imports(tree, module, path.name == "__init__.py"):
            submodules = [f"{target}.{name}" for name in names if f"{target}.{name}" in modules]
            edges.update(submodules)
            if target in modules and (not names or len(submodules) < len(names)):
                edges.add(target)
        graph[module] = edges - {module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


PROJECT = _modules(ROOTS)
GRAPH = _import_graph(PROJECT)


def test_the_import_graph_sees_the_project() -> None:
    assert {"driftline.storage.store", "driftline.cli.app", "tasks.events", "flows.retrain"} <= set(PROJECT)
    assert "driftline.events.sink" in GRAPH["tasks.events"]
    assert "driftline.cli.prefect_api" in GRAPH["driftline.cli.stack_commands"]  # imported inside a function


@pytest.mark.parametrize("layer", ["tasks", "flows"])
def test_tasks_and_flows_never_import_the_cli_shell(layer: str) -> None:
    offenders = {
        module: sorted(target for target in targets if target == "driftline.cli" or target.startswith("driftline.cli."))
        for module, targets in GRAPH.items()
        if module.split(".")[0] == layer
    }
    assert {module: targets for module, targets in offenders.items() if targets} == {}


def test_no_import_cycle_among_driftline_tasks_and_flows() -> None:
    assert _cycles(GRAPH) == []


def test_a_cycle_hidden_inside_a_function_is_found_and_type_checking_imports_are_not(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (package / "b.py").write_text("from pkg.a import f\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n")
    (package / "d.py").write_text("import pkg.c\n")
    (package / "e.py").write_text("from . import f\n")
    (package / "f.py").write_text("from .e import x\n")
    graph = _import_graph(_modules([package]))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"} and graph["pkg.c"] == set()
    assert _cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.e", "pkg.f"]]


# ------------------------------------------------------------------------------------ pure decisions
# Decisions (drift, gates, shadow verdict, guard, performance, the loop's sequencing) are pure: they are given
# their state and return a verdict; the loop's steps (driftline.loop.drift_checks, evaluation, retraining,
# cooldown) load and store that state. What a pure module may reach, even transitively: no store, no events,
# no network client.
PURE_DECISIONS = sorted(m for m in PROJECT if m.startswith("driftline.statistics.") or m == "driftline.loop.rules")
PURE_MAY_REACH = {
    "driftline.errors",
    "driftline.models.spec",  # the policies the decisions are taken under
    "driftline.models.validation",  # gate names and reports the rules read
    "driftline.data.whylogs_compat",  # profile views the drift statistics read
    "driftline.storage.layout",  # name patterns, no I/O
}
IO_LIBRARIES = {"boto3", "botocore", "httpx", "requests", "prefect"}


def _reach(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_pure_decision_modules_are_found() -> None:
    assert {"driftline.statistics.drift", "driftline.statistics.shadow", "driftline.loop.rules"} <= set(PURE_DECISIONS)


@pytest.mark.parametrize("module", PURE_DECISIONS)
def test_a_decision_module_never_reaches_the_store_events_or_a_network_client(module: str) -> None:
    reached = _reach(module)
    io_modules = sorted(m for m in reached if not m.startswith("driftline.statistics") and m not in PURE_MAY_REACH)
    libraries = sorted(set().union(*(_imported_roots(PROJECT[m]) for m in {module, *reached})) & IO_LIBRARIES)
    assert (io_modules, libraries) == ([], [])


def test_the_reach_check_sees_a_store_behind_an_innocent_import() -> None:
    """``driftline.loop.drift_checks`` (a step, not a decision) reaches the store through its imports."""
    assert "driftline.storage.store" in _reach("driftline.loop.drift_checks")
