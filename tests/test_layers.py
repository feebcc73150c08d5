"""The layers import downward only (docs/ARCHITECTURE.md): each folder of ``nomagic`` may import
the folders listed for it here and nothing above; engines do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nomagic"

# folder -> the folders (top-level units of nomagic) it may import, besides itself
ALLOWED = {
    "errors": set(),
    "version": set(),
    "model": {"errors"},
    "runtime": {"errors"},
    "engines": {"errors", "model", "runtime"},
    "io": {"errors", "model", "engines"},
    "train": {"errors", "model", "engines", "io"},
    "data": {"errors", "model", "io"},
    "apps": {"errors", "model", "runtime", "engines", "io", "train", "data", "__init__"},
    "cli": {"errors", "apps", "train", "data", "__init__"},
    "__main__": {"cli"},
}
# the one door that points up: a network runs on an engine chosen by name
DOORS = {("model/graph.py", "engines")}
ENGINES = {"tensor", "processes", "ray"}
# engines do not import each other, but one: the ray engine is another transport for the processes
# engine's state machines (neuron, sensor, actuator, cortex; docs/ARCHITECTURE.md), and runs them
TRANSPORTS = {("ray", "processes")}


def _unit(parts: list[str]) -> str:
    """The folder (or top-level module) of ``nomagic`` that a module path names; a name that is
    neither (``from nomagic import fit``) is the public API of the package itself."""
    if not parts:
        return "__init__"
    name = parts[0].removesuffix(".py")
    return name if (SRC / name).is_dir() or (SRC / f"{name}.py").is_file() else "__init__"


def _imports(path: Path):
    """(target module parts under nomagic) for every import of nomagic in ``path``."""
    rel = path.relative_to(SRC)
    package = list(rel.parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
                names = [a.name for a in node.names] if not node.module else []
                yield from ([mod + [n] for n in names] or [mod])
            elif node.module and node.module.split(".")[0] == "nomagic":
                yield node.module.split(".")[1:]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "nomagic":
                    yield a.name.split(".")[1:]


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_downward(path):
    rel = path.relative_to(SRC)
    me = _unit(list(rel.parts))
    if me == "__init__":
        return  # the package's front door re-exports the public API
    allowed = ALLOWED[me] | {me, "errors", "version"}
    for target in _imports(path):
        unit = _unit(target)
        if (str(rel), unit) in DOORS:
            continue
        assert unit in allowed, f"{rel} imports nomagic.{'.'.join(target)}: {me} may not import {unit}"
        if me == "engines" == unit and len(rel.parts) > 2 and len(target) > 1:
            mine, theirs = rel.parts[1], target[1].removesuffix(".py")
            assert not (mine in ENGINES and theirs in ENGINES and mine != theirs
                        and (mine, theirs) not in TRANSPORTS), \
                f"{rel} imports another engine's module nomagic.{'.'.join(target)}"


def test_no_module_writes_into_a_network():
    """Engines keep their plans in caches of their own (engines/cache.py), never in the network."""
    for path in MODULES:
        if path.name == "graph.py":
            continue
        text = path.read_text(encoding="utf-8")
        assert "._memo" not in text and "._cache[" not in text, path
