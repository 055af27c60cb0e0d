"""The rooms' import rules, checked on the source (every import, function-local and TYPE_CHECKING ones included):

* the core (labels, config, audio, features, integrity, vad, front_end, degrade, heap, registry, encoders, data, head) imports neither serving nor research;
* serving imports the core only, never research;
* research may import the core, and from serving only its schemas;
* nothing in the package imports pipelines/, bench/ or tools/; no import cycles;
* a function-local import says why it is not at the top (a comment on its line or the line above).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "emotion_core"
CORE = ("labels", "config", "audio", "features", "integrity", "registry", "vad", "front_end", "degrade", "heap", "encoders", "data", "head")
ENTRY_POINTS = ("cli", "inference")  # the package's own commands: they use serving like a user does
OUTSIDE = ("pipelines", "bench", "tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, function-local?) for every import in the file; `from a import b` yields a.b when
    a.b is a module of this repository, else a."""
    tree = ast.parse(path.read_text(), str(path))
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    here = module_name(path).split(".")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in local) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = here if path.name == "__init__.py" else here[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if _is_module(sub) else base, node.lineno, id(node) in local))
    return found


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def room(module: str) -> str | None:
    """core / serving / research / entry / outside for this repository's modules, None for third-party ones."""
    parts = module.split(".")
    if parts[0] in OUTSIDE:
        return "outside"
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    if parts[1] in ("serving", "research"):
        return parts[1]
    if parts[1] in ENTRY_POINTS:
        return "entry"
    raise AssertionError(f"{module}: a module outside the rooms (add it to one)")


def package_files() -> list[Path]:
    return sorted((ROOT / PACKAGE).rglob("*.py"))


def violations(files: list[Path]) -> list[str]:
    allowed = {"core": {"core"}, "serving": {"core", "serving"}, "research": {"core", "research"},
               "entry": {"core", "serving"}}
    found = []
    for path in files:
        mine = room(module_name(path))
        for target, line, _ in imports(path):
            theirs = room(target)
            if theirs is None or theirs in allowed[mine]:
                continue
            if mine == "research" and target == f"{PACKAGE}.serving.schemas":
                continue  # research may use serving's schemas
            found.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {theirs} ({target})")
    return found


def test_every_module_is_in_a_room():
    for path in package_files():
        room(module_name(path))


def test_rooms_import_only_what_they_may():
    assert violations(package_files()) == []


def test_the_check_catches_serving_importing_research():
    """The rule bites: a serving module that imports research (even inside a function) is reported."""
    fake = ROOT / PACKAGE / "serving" / "_contract_probe.py"
    fake.write_text("def f():\n    from emotion_core.research import cv  # a forbidden import\n")
    try:
        assert violations([fake]) == [f"{fake.relative_to(ROOT)}:2: serving imports research (emotion_core.research.cv)"]
    finally:
        fake.unlink()


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for path in package_files():
        graph[module_name(path)] = {t for t, _, _ in imports(path) if t.startswith(PACKAGE + ".") and t != module_name(path)}
    # a module importing its own package's __init__ is the package loading, not a cycle
    for name, targets in graph.items():
        targets -= {p for p in targets if name.startswith(p + ".")}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def local_import_blocks(path: Path) -> list[tuple[int, int]]:
    """(first line, last line) of each run of back-to-back imports inside a function (multi-line ones included)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = sorted({(n.lineno, n.end_lineno) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))})
    blocks: list[list[int]] = []
    for start, end in nodes:
        if blocks and start <= blocks[-1][1] + 1:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([start, end])
    return [(a, b) for a, b in blocks]


@pytest.mark.parametrize("folder", [PACKAGE, *OUTSIDE])
def test_function_local_imports_say_why(folder):
    """A function-local import keeps a heavy or optional import off a light path; a comment says which (on the
    import, or the line above a run of imports)."""
    unexplained = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        lines = path.read_text().splitlines()
        for first, last in local_import_blocks(path):
            if not any("#" in text for text in lines[max(0, first - 2) : last]):
                unexplained.append(f"{path.relative_to(ROOT)}:{first}: {lines[first - 1].strip()}")
    assert unexplained == []
