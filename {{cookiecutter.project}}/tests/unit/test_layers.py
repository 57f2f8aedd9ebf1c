"""The package's layers (pyproject.toml's [tool.importlinter]): imports only go down, so the
dependency picture has no cycle, function-level imports included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from {{ cookiecutter.package }}.config import PACKAGE

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _cycle(edges: dict[str, set[str]]) -> list[str]:
    """One import cycle among `edges` (module -> modules it imports), or []."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for imported in sorted(edges.get(node, ())):
            if found := visit(imported, [*path, node]):
                return found
        done.add(node)
        return []

    for node in sorted(edges):
        if found := visit(node, []):
            return found
    return []


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr


def test_no_module_and_no_top_level_part_imports_itself_through_others():
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    modules = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    # deploy/ and platforms/ taken whole, as the layers contract sees them.
    top = {}
    for module, imported in modules.items():
        part = ".".join(module.split(".")[:2])
        top.setdefault(part, set()).update(".".join(i.split(".")[:2]) for i in imported)
        top[part].discard(part)

    assert _cycle(modules) == []
    assert _cycle(top) == []


def test_a_cycle_is_found_where_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
