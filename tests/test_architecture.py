"""The package graph points one way: the layers of docs/architecture.md, kept by import-linter."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Check the contracts of ``root``'s pyproject.toml against the ``portal`` found there."""
    return subprocess.run(
        [sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
        timeout=120, check=False)


def test_every_import_points_down_the_layers_and_no_package_has_a_cycle() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(("module", "arrow"), [
    # A platform module reaching up into a feature, and a feature reaching up into another.
    ("db.py", "import portal.hr.service\n"),
    ("catalog/models.py", "from portal.consent import models as _consent_models\n"),
])
def test_an_arrow_against_the_layers_fails_the_check(tmp_path: Path, module: str,
                                                     arrow: str) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "portal", tmp_path / "portal",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    target = tmp_path / "portal" / module
    target.write_text(target.read_text() + "\n" + arrow)
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout


def test_no_module_is_imported_by_name_at_run_time() -> None:
    """``importlib.import_module("portal…")`` would hide an arrow from the check above."""
    hidden = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"import_module", "find_spec", "__import__"}):
                hidden.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert hidden == []


def test_the_documented_layers_are_the_checked_layers() -> None:
    """docs/architecture.md lists the same layers, in the same order, as the contract."""
    import tomllib

    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    checked = next(c for c in contract["contracts"] if c["id"] == "layers")["layers"]
    documented = re.findall(r"^\| \d+ \| `([^`]+)` \|", (ROOT / "docs" / "architecture.md")
                            .read_text(), flags=re.MULTILINE)
    assert [layer.replace("\\|", "|") for layer in documented] == checked
