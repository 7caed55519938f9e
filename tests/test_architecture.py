"""The package's layering, read from the source with ``ast`` (every import, at module level or inside a function).

Layers, lowest first (a module may import its own layer and the ones below, never one above)::

    schema/ (+ testing/) < storage/ < data/ < formats/ < recording/ < collectors/ < wrappers/
        < integrations/ < the package facade (gym_aquacollect/__init__.py) < cli/

Also checked: ``data/`` never imports Ray, torch, the formats or the integrations (it reaches them only through
``gym_aquacollect.data.registry.late_import``, by name, at call time); the old import paths kept for users
(``gym_aquacollect/dataset.py``, ``spaces.py``, ...) hold no logic and nothing in the package imports them; the
packages form no import cycle. ``test_checker_catches_planted_violations`` plants each kind of violation in a
copy of the real sources and sees the checker report it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gym_aquacollect"

LAYERS = ["schema", "storage", "data", "formats", "recording", "collectors", "wrappers", "integrations",
          "__init__", "cli"]
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["testing"] = 0  # test envs: import nothing from the package
RANK["logs"] = 0  # the library logger (stdlib logging, shown through loguru)
RANK["registration"] = RANK["data"]  # registers the replay env (data/replay.py) with Gymnasium

#: old import paths kept for users: re-exports only, imported by nothing in the package
COMPAT = {"gym_aquacollect.spaces", "gym_aquacollect.dataset", "gym_aquacollect.validate", "gym_aquacollect.replay",
          "gym_aquacollect.torch_data", "gym_aquacollect.distributed", "gym_aquacollect.cli_formats",
          "gym_aquacollect.report", "gym_aquacollect.collectors.columns", "gym_aquacollect.formats._common"}

FORBIDDEN_IN_DATA = ("ray", "torch", "gym_aquacollect.formats", "gym_aquacollect.integrations")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def read_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """``{module name: (source, is_package)}`` for every module of the package."""
    return {module_name(p, root): (p.read_text(), p.name == "__init__.py") for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool) -> list[tuple[str, int]]:
    """Every module ``name`` imports (absolute names, relative imports resolved), with line numbers."""
    pkg = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # `from gym_aquacollect import formats` imports a module too
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names if mod.startswith("gym_aquacollect")]
    return out


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def known(module: str, sources: dict) -> str | None:
    """The package module ``module`` names (itself, or its package for an attribute import), or None."""
    while module and module not in sources:
        module = module.rpartition(".")[0]
    return module or None


def check(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every layering violation in ``sources`` (see the module docstring), as readable lines."""
    problems = []
    edges: dict[str, set[str]] = {}
    for name, (src, is_pkg) in sources.items():
        here = layer_of(name)
        if name in COMPAT:
            tree = ast.parse(src)
            logic = [n for n in tree.body if not isinstance(n, (ast.ImportFrom, ast.Import))
                     and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
            if logic:
                problems.append(f"{name}: an old import path kept for users holds code (line {logic[0].lineno})")
            continue
        for imp, line in imports_of(name, src, is_pkg):
            if here == "data" and any(imp == f or imp.startswith(f + ".") for f in FORBIDDEN_IN_DATA):
                problems.append(f"{name}:{line} imports {imp} (data/ reaches it only through registry.late_import)")
            if not imp.startswith("gym_aquacollect"):
                continue
            target = known(imp, sources)
            if target is None or target == name:
                continue
            if target in COMPAT:
                problems.append(f"{name}:{line} imports {target}, an old path kept for users (import the real module)")
                continue
            there = layer_of(target)
            if there not in RANK or here not in RANK:
                problems.append(f"{name}:{line}: {here!r} or {there!r} is in no layer; add it to LAYERS")
            elif RANK[there] > RANK[here]:
                problems.append(f"{name}:{line} imports {target}: {here}/ may not import {there}/ (a layer above)")
            if there != here:
                edges.setdefault(here, set()).add(there)
    # cycles between packages (redundant with the ranks, but says which packages when RANK is edited)
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                problems.append("import cycle between packages: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return problems


def test_every_module_is_in_a_layer():
    sources = read_sources()
    assert len(sources) > 40
    for name in sources:
        assert name in COMPAT or layer_of(name) in RANK, f"{name} is in no layer (add its folder to LAYERS)"
    for layer in ("schema", "storage", "data", "formats", "recording", "collectors", "wrappers", "integrations", "cli"):
        assert any(layer_of(n) == layer for n in sources), f"no module in {layer}/"


def test_layers_point_down():
    assert check(read_sources()) == []


def test_data_layer_reaches_up_only_through_the_registry():
    sources = read_sources()
    users = [n for n, (src, _) in sources.items() if layer_of(n) == "data" and "importlib" in src]
    assert users == ["gym_aquacollect.data.registry"]


def test_checker_catches_planted_violations():
    clean = read_sources()

    def planted(module: str, line: str, *, in_function: bool = True) -> list[str]:
        sources = dict(clean)
        src, is_pkg = sources[module]
        code = f"\n\ndef _planted():\n    {line}\n" if in_function else f"\n{line}\n"
        sources[module] = (src + code, is_pkg)
        return check(sources)

    up = planted("gym_aquacollect.schema.spaces", "from gym_aquacollect.wrappers import CollectingWrapper")
    assert any("schema/ may not import wrappers/" in p for p in up), up
    rel = planted("gym_aquacollect.recording.batched", "from ..collectors.base import BaseCollector")
    assert any("recording/ may not import collectors/" in p for p in rel), rel
    torch = planted("gym_aquacollect.data.dataset", "import torch", in_function=False)
    assert any("imports torch" in p for p in torch), torch
    fmt = planted("gym_aquacollect.data.dataset", "from gym_aquacollect import formats")
    assert any("imports gym_aquacollect.formats" in p for p in fmt), fmt
    shim = planted("gym_aquacollect.collectors.base", "from gym_aquacollect.dataset import load_dataset")
    assert any("an old path kept for users" in p for p in shim), shim
    logic = planted("gym_aquacollect.dataset", "x = 1", in_function=False)
    assert any("holds code" in p for p in logic), logic
    cyc = planted("gym_aquacollect.storage.writer", "from gym_aquacollect.data.dataset import Dataset")
    assert any("import cycle between packages" in p for p in cyc), cyc


@pytest.mark.parametrize("name", sorted(COMPAT))
def test_old_import_paths_still_work(name):
    import importlib

    mod = importlib.import_module(name)
    assert [n for n in dir(mod) if not n.startswith("__")], f"{name} re-exports nothing"


def test_long_modules_say_why():
    for name, (src, _) in read_sources().items():
        if src.count("\n") > 500:
            doc = ast.get_docstring(ast.parse(src)) or ""
            assert "Size: over 500 lines because" in doc, f"{name} has {src.count(chr(10))} lines and no 'Size:' note"
