"""The hexagon's direction: functions -> adapters -> core, and core on the standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = {"core", "adapters", "functions"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {name.split(".")[0] for name in names}


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules_of("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_only_the_standard_library(path: Path) -> None:
    outside = imported_modules(path) - set(sys.stdlib_module_names) - {"core", "__future__"}
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize("path", modules_of("core") + modules_of("adapters"), ids=lambda p: str(p.relative_to(ROOT)))
def test_inner_layers_never_import_outer_ones(path: Path) -> None:
    layer = path.relative_to(ROOT).parts[0]
    forbidden = {"core": {"adapters", "functions"}, "adapters": {"functions"}}[layer]
    assert not imported_modules(path) & forbidden


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import redis\nfrom functions.api import create_app\n")
    assert imported_modules(bad) == {"redis", "functions"}
