"""The package's shape: stages import downward only.

Every ``import musify...`` in ``src/musify`` (at module level or inside a function) is
read from the source, and each module's layer must be at or above the layer of what it
imports. The order is the pipeline's: the foundation (errors, settings, logs, the event
schema, process and lock helpers), the simulation, the broker, the lake's tables, the
stream, the live layer, the warehouse, the hourly batch, orchestration, the dashboard,
and the CLI on top (docs/architecture.md).

In ``tests``, no test module imports another: what several share lives in a helper module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import musify

ROOT = Path(musify.__file__).parent
TESTS = Path(__file__).parent

#: Lowest first. A module's layer is that of its top-level name under ``musify``.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"", "errors", "settings", "logs", "events", "procs", "locks"}),
    frozenset({"sim"}),
    frozenset({"broker"}),
    frozenset({"lake"}),
    frozenset({"stream"}),
    frozenset({"live"}),
    frozenset({"warehouse"}),
    frozenset({"batch"}),
    frozenset({"orchestration"}),
    frozenset({"dashboard"}),
    frozenset({"cli", "__main__"}),
)


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: no layer; add musify.{top} to LAYERS")


def module_name(path: Path) -> str:
    parts = ("musify", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "musify" or m.startswith("musify.")}


def test_every_module_imports_only_its_own_layer_or_lower() -> None:
    upward = []
    modules = sorted(ROOT.rglob("*.py"))
    assert len(modules) > 50
    for path in modules:
        name = module_name(path)
        for target in sorted(imports_of(path)):
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} imports {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from musify.broker.kafka import KafkaSink\n")
    (target,) = imports_of(source)
    assert layer_of(target) > layer_of("musify.sim.runner")


def imported_test_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each import in ``path`` of a module named ``test_*``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            modules = [base]
            if node.level or base == "tests" or base.startswith("tests."):
                # ``from tests.stream import test_job`` imports the module test_job
                sep = "" if base.endswith(".") else "."
                modules += [f"{base}{sep}{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.split(".")[-1].startswith("test_")]
    return sorted(set(found))


def test_no_test_module_imports_another() -> None:
    found = []
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) > 50
    for path in modules:
        for line, module in imported_test_modules(path):
            found.append(f"{path.relative_to(TESTS.parent)}:{line} imports {module}")
    message = "test modules importing test modules (move the helper out):\n" + "\n".join(found)
    assert not found, message
