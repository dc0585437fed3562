"""The one hard line of the architecture: the domain package never imports Prefect."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import driftline

PACKAGE = Path(driftline.__file__).parent
DOMAIN_MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "cli" not in path.relative_to(PACKAGE).parts)


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
