"""Imports run one way between the package's areas, as `test_dvc_deps` checks the stages' deps.

`schema.py` and `tasks.py` import only each other; `lab/` imports neither `studies/`
nor `report/`; `report/` reads the results files whose paths `schema.py` names and
never imports `studies/`;
`studies/` takes from `report/` only the overwrite guard of `report/owned.py`.
Imports inside functions and under `TYPE_CHECKING` count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "tuninglab"
# area -> the areas (or single modules) it may import from `tuninglab`, beside itself
BOTTOM = ("tuninglab.schema", "tuninglab.tasks")  # names and task records every area shares
ALLOWED = {
    "lab": ("tuninglab.lab", *BOTTOM),
    "schema": BOTTOM,
    "tasks": BOTTOM,
    "studies": ("tuninglab.lab", *BOTTOM, "tuninglab.studies", "tuninglab.report.owned"),
    "report": ("tuninglab.lab", *BOTTOM, "tuninglab.report"),
}


def area(path: Path) -> str:
    """The area of a module file of the package: `lab`, `studies`, `report`, `schema` or `tasks`."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported(path: Path) -> list[str]:
    """The dotted names a module imports from `tuninglab` (`tuninglab.report.owned`), wherever it imports."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in names if name.startswith("tuninglab.")]


def allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether an imported dotted name lies under one of the allowed prefixes."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def wrong_way(path: Path) -> list[str]:
    """The imports of a module that run against the direction of its area."""
    prefixes = ALLOWED[area(path)]
    return [name for name in imported(path) if not allowed(name, prefixes)]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if area(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(ROOT).as_posix() for p in MODULES])
def test_imports_run_one_way(path):
    assert wrong_way(path) == []


def test_the_check_sees_an_import_against_the_direction(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    (tmp_path / "report").mkdir()
    module = tmp_path / "report" / "x.py"
    module.write_text(
        "def f():\n    from tuninglab.studies.collect import read\n    from tuninglab.report import format\n"
    )
    assert wrong_way(module) == ["tuninglab.studies.collect.read"]
