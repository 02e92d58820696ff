"""The application's modules import one another without a circle.

The graph is built from the source, imports inside functions counted: a function-level
import hides a circle from Python's start-up but not from the next engineer, who must read
both modules to understand either. Edges go to the module an import names (`from a import b`
names `a.b` where that is a module, else `a`); a package's `__init__` is a module like any
other. Imports under `if TYPE_CHECKING:` are never executed: the circle check leaves them out
(two SQLAlchemy models annotating each other's relationship name each other so), while the
package rules below still count them.
"""

import ast
from pathlib import Path

from tests.no_services import librosa_compiled_first, module_services  # noqa: F401  (no services here)

ROOT = Path(__file__).resolve().parent.parent




PACKAGES = ("api", "cli", "core", "models", "workers", "storage", "evaluation", "local_stack")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")) if (ROOT / package).is_dir() else ():
            found[_module_name(path)] = path
    return found


def _imported(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:  # relative: from the module's own package upward
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes in the bodies of `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)
    blocks: for the type checker alone, never run. An `else:` branch runs, and is kept."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                or isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def import_graph(type_checking: bool = True) -> dict[str, set[str]]:
    """`type_checking`: count the imports under `if TYPE_CHECKING:` too."""
    known = _modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = set() if type_checking else _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            for target in _imported(node, name, path.name == "__init__.py", known):
                # `import a.b.c` names a.b.c; the nearest module of ours it names is the edge
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
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
    return found


def test_the_checker_finds_a_circle_hidden_in_a_function():
    """The control: the same code sees a circle that only a function-level import closes."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from core import settings\n")
    known = {"core": ROOT, "core.settings": ROOT}
    assert [t for n in ast.walk(tree) for t in _imported(n, "x", False, known)] == ["core.settings"]
    # ...but not one only the type checker reads.
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import settings\n"
                     "else:\n    from core import cuda\n")
    skipped = _type_checking_only(tree)
    assert [t for n in ast.walk(tree) if id(n) not in skipped for t in _imported(n, "x", False, known)] \
        == ["typing", "core"]


def test_no_module_of_the_application_is_in_an_import_circle():
    # Imports under `if TYPE_CHECKING:` are left out: they never run, so they close no circle
    # at start-up, and SQLAlchemy models annotating each other's relationships need them.
    graph = import_graph(type_checking=False)
    assert len(graph) > 100, "the application's modules were not found"
    found = circles(graph)
    assert not found, "import circles (imports inside functions counted):\n" + "\n".join(
        " <-> ".join(circle) for circle in found)


def test_the_method_never_imports_the_runtime_that_runs_it():
    """The pipelines, steps, agents and tools (workers/method) are run by the durable runtime
    (workers/runtime: claims, leases, the outbox); what they need of it (is the step still
    ours?) reaches them through workers/method/paid_work.py, set by the runtime."""
    graph = import_graph()
    crossing = sorted(f"{module} -> {target}" for module, targets in graph.items()
                      if module.startswith("workers.method") for target in targets
                      if target.startswith("workers.runtime"))
    assert not crossing, "\n".join(crossing)


# What each package may import besides itself, as its __init__'s docstring says.
MAY_IMPORT = {
    "core": set(),
    "models": {"core"},
    "storage": {"core"},
    "evaluation": {"core"},
    "local_stack": {"core", "models", "storage"},
    "workers.method": {"core", "models", "storage"},
    "workers.runtime": {"core", "models", "storage", "workers.method"},
    "api.intake": {"api", "core", "models", "storage", "workers.method", "workers.runtime"},
    "api.front_door": {"api", "api.intake", "core", "models", "storage", "workers.method"},
    "api.routes": {"api", "api.intake", "api.front_door", "core", "evaluation", "models", "storage",
                   "workers.method", "workers.runtime"},
}


def _package(module: str) -> str:
    for package in sorted(MAY_IMPORT, key=len, reverse=True):
        if module == package or module.startswith(package + "."):
            return package
    return module.partition(".")[0]


def test_each_package_imports_only_what_its_docstring_allows():
    graph = import_graph()
    broken = sorted(f"{module} -> {target}" for module, targets in graph.items()
                    if (package := _package(module)) in MAY_IMPORT for target in targets
                    if (other := _package(target)) != package and other not in MAY_IMPORT[package])
    assert not broken, "\n".join(broken)


def test_every_import_inside_a_function_says_why_it_is_there():
    """A project module imported inside a function is one some role must not load at start
    (a model library, the tool registry); the line, or the one above it, says which and why.
    Anything else belongs at the top of its module, where a reader looks for it."""
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().split("\n")
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                named = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                if not any(n.partition(".")[0] in PACKAGES for n in named):
                    continue
                here, above = lines[node.lineno - 1], lines[node.lineno - 2].strip()
                if "#" not in here and not above.startswith("#"):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}: {here.strip()}")
    assert not unexplained, "\n".join(unexplained)
