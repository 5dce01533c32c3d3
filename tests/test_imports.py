"""The import graph of ``nerdistill`` (docs/architecture.md): no cycle between its modules at module
level (imports inside functions and under ``if TYPE_CHECKING:`` do not run at import time and are left
out), and the layers import one way: ``data`` none of the other subpackages, ``student`` not the
teacher, the selection, the reports or an entry point."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package by its ``__init__.py``)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    """The dotted names an import statement in ``package`` may load (``from a import b``: ``a.b`` and ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_statements(node: ast.AST, module_level: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements under ``node``; ``module_level``: only those that run when the module is imported."""
    found = []
    for child in ast.iter_child_nodes(node):
        if module_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if (
            module_level
            and isinstance(child, ast.If)
            and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        ):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        found += import_statements(child, module_level)
    return found


def import_graph(root: Path, module_level: bool = True) -> dict[str, set[str]]:
    """Each module's imports of the package's own modules (see :func:`import_statements`)."""
    names = modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in names:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        statements = import_statements(ast.parse(path.read_text(encoding="utf-8")), module_level)
        targets = {resolve(target) for statement in statements for target in imported(statement, package)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_between_modules():
    assert cycles(import_graph(ROOT / "nerdistill")) == []


def test_a_cycle_is_found(tmp_path):
    """The check fails on a cycle, and only on one that runs at import time."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from .. import a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n")
    (package / "d.py").write_text("import pkg.c\n\ndef later():\n    from pkg.a import x\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub.b"]]
    assert cycles(import_graph(package, module_level=False)) == [["pkg.a", "pkg.sub.b"], ["pkg.c", "pkg.d"]]


def test_layers_import_one_way():
    """Any import, function-level ones too: ``data`` uses no other subpackage, the student not the teacher."""
    graph = import_graph(ROOT / "nerdistill", module_level=False)
    entry_points = {
        "nerdistill." + p.stem
        for p in (ROOT / "nerdistill").glob("*.py")
        if "@hydra.main" in p.read_text(encoding="utf-8")
    }
    for module, targets in graph.items():
        if module.startswith("nerdistill.data."):
            assert not {
                t
                for t in targets
                if t.startswith(
                    ("nerdistill.student", "nerdistill.teacher", "nerdistill.selection", "nerdistill.reporting")
                )
            }, module
        if module.startswith("nerdistill.student."):
            assert not {
                t
                for t in targets
                if t.startswith(("nerdistill.teacher", "nerdistill.selection", "nerdistill.reporting"))
                or t in entry_points
            }, module
