"""No two modules of digest/ import each other, not even inside a function; no two of its packages
either (data flows one way: feeds -> selection -> prompts -> engine -> render -> file).

The graph is read from the source with `ast`, so that an import inside a function counts as much as
one at the top. The rule, modelling what Python really runs:

- `import a.b.c` and `from a.b import c` where `a.b.c` is a module: an edge to `a.b.c` (a package
  __init__ importing its submodules counts like any other module);
- `from a.b import name` where `name` is not a module (a function, a constant): an edge to `a.b`,
  whose __init__ must run to define it (`from . import CACHE_TYPES_K` in a submodule imports its
  package);
- relative imports are resolved against the importing module's package;
- the parent packages that Python loads on the way to a submodule are not edges (every submodule
  would otherwise form a circle with an __init__ that imports it);
- imports under `if TYPE_CHECKING:` never run and are not edges; imports from outside digest/ are
  left out.

A circle is a strongly connected component of two or more modules. The same is checked one level
up, between the subpackages (engine, models, bench) and the top-level modules, each subpackage
taken whole: `engine.native` importing `models.gguf` while `models.quantize` imports
`engine.native` is a circle between two packages even where no two modules close one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "digest"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Each module of the package by its dotted name (a package by its __init__.py)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = (package.name,) + path.relative_to(package).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, at any depth, except those under `if TYPE_CHECKING:`."""
    found = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of digest/ that module `name` (at `path`) imports, by the rule above."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            edges.add(submodule if submodule in known else source)
    return {edge for edge in edges if edge in known and edge != name}


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    found = modules(package)
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of two or more nodes (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def package_of(name: str) -> str:
    """A module's node one level up: its subpackage of digest/ (digest.engine), or itself."""
    parts = name.split(".")
    return ".".join(parts[:2])


def package_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for name, targets in edges.items():
        node = package_of(name)
        packages.setdefault(node, set()).update(package_of(t) for t in targets if package_of(t) != node)
    return packages


def describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    return "; ".join(f"{a} -> {', '.join(sorted(edges[a] & inside))}" for a in component)


def test_the_reader_sees_function_level_and_relative_imports(tmp_path):
    """The reader itself: a circle closed only inside a function, through a relative import of a
    name (not a module) from a package, is found."""
    package = tmp_path / "digest"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .low import thing\nLIMIT = 1\n")
    (package / "sub" / "low.py").write_text("def thing():\n    from . import LIMIT\n    return LIMIT\n")
    (package / "top.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import other\n")
    (package / "other.py").write_text("from . import top\n")
    edges = graph(package)
    assert edges["digest.sub.low"] == {"digest.sub"}
    assert edges["digest.sub"] == {"digest.sub.low"}
    assert edges["digest.top"] == set()  # under TYPE_CHECKING: never runs
    assert circles(edges) == [["digest.sub", "digest.sub.low"]]


def test_no_two_modules_import_each_other():
    edges = graph()
    found = circles(edges)
    assert not found, "import circles:\n" + "\n".join(describe(c, edges) for c in found)


def test_no_two_packages_import_each_other():
    edges = package_graph(graph())
    found = circles(edges)
    assert not found, "package import circles:\n" + "\n".join(describe(c, edges) for c in found)
