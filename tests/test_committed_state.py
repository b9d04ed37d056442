"""The committed dvc.lock (and so the committed metrics) comes from the committed code and params."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ROOT, sh


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
