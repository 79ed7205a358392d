"""The tests' own layout: helpers in tests/support, fixtures in tests/fixtures, nothing else
shared; a test module never imports another test module or a conftest."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SHARED = ("tests.support", "tests.fixtures")


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_tests_import_only_the_shared_helpers_and_fixtures() -> None:
    wrong = {
        f"{path.relative_to(TESTS)}: {module}"
        for path in TESTS.rglob("*.py") if "node_modules" not in path.parts
        for module in _imported_modules(path)
        if (module == "tests" or module.startswith("tests."))
        and not any(module == shared or module.startswith(shared + ".") for shared in SHARED)
    }
    assert not wrong, "import from tests/support or tests/fixtures instead:\n" + "\n".join(
        sorted(wrong))
