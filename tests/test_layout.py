"""The package's layout rules: imports run one way, and ``tasks/`` uses only what ``simmm`` exports.

Both rules are checked on the source with :mod:`ast`.

Which imports count for cycles. Every import of one package module by another counts, also one inside a function:
a function-level import that closes a circle is the usual way to hide one (``segmentation.py`` once imported
``cityscapes.py`` inside its functions while ``cityscapes.py`` imported it at the top). Two checks:

- the imports that run while a module is being imported (module level, top-level ``if``/``try``, class bodies;
  not function bodies, not ``if TYPE_CHECKING:``) form no cycle at all: such a cycle hands a module a
  half-initialised one;
- all imports together form no cycle except through :data:`DEFERRED`, the few imports inside functions that load
  plug-ins on purpose (``simmm.task.get_task`` loads ``simmm.tasks``, whose adapters import ``simmm.task`` to
  register themselves). A new one is added there with its reason.

Only explicit imports are edges: ``import a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, but a package's
``__init__`` importing its own modules is the usual pattern, not a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]

DEFERRED = {
    ("simmm.task", "simmm.tasks"): "get_task/task_schemas load the adapters that ship; they register themselves",
    ("simmm.method", "simmm.methods"): "get_method/method_schemas load the methods that ship; they register themselves",
}
"""Imports inside functions that may close a cycle: (importing module, imported module) -> why."""


def package_modules() -> Dict[str, Path]:
    """Every module of the ``simmm`` package: ``simmm/**.py``, plus ``tasks/*.py`` as ``simmm.tasks.*`` (the
    setuptools mapping; the ``simmm/tasks`` and ``simmm/recipes`` links of a checkout are not followed)."""
    out: Dict[str, Path] = {}
    for path in sorted((ROOT / "simmm").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if any((ROOT / Path(*rel.parts[:i])).is_symlink() for i in range(1, len(rel.parts))):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    for path in sorted((ROOT / "tasks").glob("*.py")):
        out["simmm.tasks" + ("" if path.stem == "__init__" else "." + path.stem)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def load_time_imports(node: ast.AST) -> Iterator[ast.stmt]:
    """The import statements that run when the module is imported (see the module docstring)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(child, ast.If) and _is_type_checking(child):
            yield from load_time_imports(ast.Module(body=child.orelse, type_ignores=[]))
        else:
            yield from load_time_imports(child)


def _base(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module named by ``from <...> import``."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    return ".".join(parts[:keep] + ([node.module] if node.module else []))


def imported_modules(module: str, node: ast.stmt, modules: Dict[str, Path]) -> List[str]:
    """The package modules one import statement loads explicitly."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _base(module, node, modules[module].name == "__init__.py")
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [n for n in names if n in modules]


def import_graph(load_time_only: bool = True) -> Dict[str, Set[str]]:
    """``module -> the package modules it imports``: at load time only, or everywhere (function bodies too)."""
    modules = package_modules()
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = load_time_imports(tree) if load_time_only else (
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        graph[name] = {dep for node in nodes for dep in imported_modules(name, node, modules) if dep != name}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle ``[a, b, ..., a]``, or ``None``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_no_import_cycle_at_load_time():
    graph = import_graph(load_time_only=True)
    assert "simmm.data.segmentation" in graph and "simmm.tasks.segmentation" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle at load time: " + " -> ".join(cycle)


def test_no_import_cycle_through_function_level_imports():
    graph = import_graph(load_time_only=False)
    for (importer, imported), why in DEFERRED.items():
        assert imported in graph[importer], f"DEFERRED lists {importer} -> {imported} ({why}), no longer imported"
        graph[importer].discard(imported)
    cycle = find_cycle(graph)
    assert cycle is None, ("import cycle (counting imports inside functions): " + " -> ".join(cycle)
                           + "; make the imports run one way, or list a deliberate plug-in load in DEFERRED")


def test_find_cycle_sees_a_cycle_and_its_members():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a2"}, "a2": set(), "x": {"y"}, "y": {"x"}}) == ["x", "y", "x"]


def test_load_time_imports_skip_function_bodies_and_type_checking():
    src = ("import a\nif TYPE_CHECKING:\n    import b\nelse:\n    import c\ntry:\n    import d\n"
           "except ImportError:\n    import e\ndef f():\n    import g\nclass K:\n    import h\n"
           "    def m(self):\n        import i\n")
    found = [n.names[0].name for n in load_time_imports(ast.parse(src))]
    assert found == ["a", "c", "d", "e", "h"]


# ----------------------------------------------------------------------------------------- tasks/ imports


def task_imports() -> Iterator[Tuple[str, int, str, str]]:
    """``(task file, line, source module, name)`` of every ``from simmm... import name`` in ``tasks/*.py``,
    also inside functions. (``import simmm.x`` forms are not checked: the tasks use ``from ... import``.)"""
    for path in sorted((ROOT / "tasks").glob("*.py")):
        module = "simmm.tasks" + ("" if path.stem == "__init__" else "." + path.stem)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                base = _base(module, node, path.name == "__init__.py")
                if base == "simmm" or base.startswith("simmm."):
                    for alias in node.names:
                        yield path.name, node.lineno, base, alias.name


def exported_names(path: Path) -> Optional[Set[str]]:
    """The module's ``__all__`` (a literal list or tuple of strings), or ``None`` when it has none."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                return set(ast.literal_eval(node.value))
    return None


def test_tasks_import_only_exported_names():
    modules = package_modules()
    bad = []
    for file, line, base, name in task_imports():
        where = f"tasks/{file}:{line}: from {base} import {name}"
        if f"{base}.{name}" in modules:
            continue  # a submodule (tasks/__init__.py imports its adapters)
        if name.startswith("_") or name == "*":
            bad.append(f"{where}: a private name (or *)")
            continue
        if base not in modules:
            bad.append(f"{where}: no module {base} in the package")
            continue
        exported = exported_names(modules[base])
        if exported is None:
            bad.append(f"{where}: {base} has no __all__")
        elif name not in exported:
            bad.append(f"{where}: {name!r} is not in {base}.__all__")
    assert not bad, "\n".join(bad)


def test_every_all_lists_only_names_the_module_defines():
    """The ``__all__`` the rule above relies on must be correct: each listed name exists in its module."""
    import importlib

    modules = package_modules()
    bad = []
    for module in sorted({base for _, _, base, _ in task_imports() if base in modules}):
        mod = importlib.import_module(module)
        bad += [f"{module}.__all__ lists {n!r}, which it lacks" for n in getattr(mod, "__all__", ()) if
                not hasattr(mod, n)]
    assert not bad, "\n".join(bad)
