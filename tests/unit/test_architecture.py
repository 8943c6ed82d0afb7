"""The hexagon's direction: functions -> adapters -> core, and core on the standard library only.

The layers are the folders at the repository root, imported as hexq.core, hexq.adapters and
hexq.functions (hexq/ holds symlinks to them; pyproject.toml says why).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("core", "adapters", "functions")


def imported_modules(path: Path) -> set[str]:
    """Top-level names imported by `path`, with hexq's layers as "hexq.core", "hexq.adapters", ..."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {_layer(name) for name in names}


def _layer(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "hexq" and len(parts) > 1 else parts[0]


def modules_of(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", modules_of("core"), ids=_id)
def test_core_imports_only_the_standard_library(path: Path) -> None:
    outside = imported_modules(path) - set(sys.stdlib_module_names) - {"hexq.core", "__future__"}
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize("path", modules_of("core", "adapters"), ids=_id)
def test_inner_layers_never_import_outer_ones(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0]
    forbidden = {"core": {"hexq.adapters", "hexq.functions"}, "adapters": {"hexq.functions"}}[layer]
    assert not imported_modules(path) & forbidden


@pytest.mark.parametrize("path", modules_of(*LAYERS, "hexq", "tests"), ids=_id)
def test_nothing_imports_the_folders_by_their_bare_names(path: Path) -> None:
    # Installed, there is no top-level core, adapters or functions (an application may have its own).
    assert not imported_modules(path) & set(LAYERS)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import redis\nfrom hexq.functions.api import create_app\nfrom core.model import Task\n")
    assert imported_modules(bad) == {"redis", "hexq.functions", "core"}


def test_the_hexq_package_maps_the_three_folders() -> None:
    for layer in LAYERS:
        link = ROOT / "hexq" / layer
        assert link.is_symlink() and link.resolve() == (ROOT / layer).resolve()
