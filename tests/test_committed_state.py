"""What is committed (dvc.lock, so the metrics, and reports/) comes from the committed code and results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, sh
from tuninglab.report import build


def tracked_changes() -> list[str]:
    """Tracked files that differ from HEAD in this checkout."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    )
    return out.stdout.splitlines()


def test_no_stage_is_stale_against_the_committed_code_or_params():
    """`dvc status` on a clean checkout: no stage whose code or params changed since dvc.lock was written.

    Data and models are not in a fresh clone (they are rebuilt by `make run`),
    so missing outputs and data dependencies are not counted; code files and
    params are.
    """
    if tracked_changes():
        pytest.skip("the checkout has uncommitted changes; this checks committed states")
    status = json.loads(sh(ROOT, "dvc", "status", "--json").stdout)
    stale = {}
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            code = [path for path in change.get("changed deps", {}) if not path.startswith("data/")]
            if code or change.get("changed params"):
                stale[stage] = code + list(change.get("changed params", {}))
    assert not stale, f"dvc.lock is older than the code or params of {stale}: run `dvc repro` and commit"


def committed_report_files() -> list[str]:
    """The report's files committed under reports/, relative to it."""
    out = sh(ROOT, "git", "ls-files", "reports").stdout.split()
    return sorted(path.removeprefix("reports/") for path in out)


@pytest.mark.slow
def test_the_committed_report_is_what_the_report_code_writes_from_the_results(tmp_path, monkeypatch):
    """Regenerating reports/ from the committed results/ with this code changes no committed file.

    The report is deterministic (figures included), so a change to the report
    code that is not followed by `python -m tuninglab report` and a commit fails here.
    """
    if tracked_changes():
        pytest.skip("the checkout has uncommitted changes; this checks committed states")
    monkeypatch.chdir(ROOT)  # the summary names the results folder as given: `results`, as `make report` does
    build.write(Path("results"), tmp_path / "reports")
    committed = committed_report_files()
    assert committed, "no report is committed"
    differ = [
        name
        for name in committed
        if not (tmp_path / "reports" / name).is_file()
        or (tmp_path / "reports" / name).read_bytes() != (ROOT / "reports" / name).read_bytes()
    ]
    assert not differ, f"reports/ is older than the report code: {differ}; run `python -m tuninglab report`"
