"""The docs describe the code as it is: docs/architecture.md's layout names only paths
that exist, and every module and package at the top of src/musify."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: An entry of the layout: indented by 0, 2 or 4 spaces, a path ending in / or .py.
ENTRY = re.compile(r"^( {0,4})(\S+(?:/|\.py))(?:\s|$)")


def layout_entries() -> list[tuple[str, Path]]:
    """(line, path) of every entry of the Layout section's tree."""
    text = ARCHITECTURE.read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    parents: dict[int, Path] = {}
    found = []
    for line in block.splitlines():
        m = ENTRY.match(line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        base = REPO if depth == 0 else parents[depth - 1]
        path = base / name.rstrip("/")
        parents[depth] = path
        found.append((line.strip(), path))
    return found


def test_every_path_the_architecture_names_exists() -> None:
    entries = layout_entries()
    assert len(entries) > 30, "the layout block was not found"
    missing = [line for line, path in entries if not path.exists()]
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_the_architecture_names_every_top_level_module_and_package() -> None:
    named = {path for _, path in layout_entries()}
    src = REPO / "src" / "musify"
    ours = {
        p
        for p in src.iterdir()
        if (p.suffix == ".py" and p.name not in {"__init__.py", "__main__.py"})
        or (p.is_dir() and not p.name.startswith("__"))
    }
    unnamed = sorted(p.name for p in ours - named)
    assert not unnamed, f"docs/architecture.md's layout does not name: {unnamed}"
