"""Every module a stage imports is one of its `dvc.yaml` deps, so no stage can stay stale.

And the paths in dvc.yaml are the ones the code reads: every stage gets its
folders as arguments, and the train stage's metrics and plots files are the
paths `tuninglab.schema` names for the studies to read.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuninglab import schema
from tuninglab.lab import datasets
from tuninglab.lab.datasets import dataset_names

LOCAL_PACKAGES = ("tuninglab", "stages")


def module_file(name: str) -> Path | None:
    """The repository file of a dotted module name, or None for a third-party module."""
    if not name.startswith(LOCAL_PACKAGES):
        return None
    path = ROOT / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return path / "__init__.py" if (path / "__init__.py").is_file() else None


def imported_files(start: Path) -> set[Path]:
    """`start` and every repository file it imports, directly or not, including imports inside functions."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            todo += [f for f in map(module_file, names) if f is not None]
    return {path for path in seen if path.name != "__init__.py"}  # package markers, docstring only


def stages() -> list[tuple[str, str, list[str]]]:
    """(stage name, its command, its deps) for each stage of dvc.yaml, foreach stages once."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    found = []
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        found.append((name, body["cmd"], [str(dep) for dep in body.get("deps", [])]))
    return found


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


def uncovered(cmd: str, deps: list[str]) -> list[str]:
    """The repository files the stage command imports that none of `deps` covers."""
    script = re.search(r"python -m (\S+)", cmd).group(1)
    return sorted(
        path.relative_to(ROOT).as_posix()
        for path in imported_files(module_file(script))
        if not covered(path, deps)
    )


@pytest.mark.parametrize(("name", "cmd", "deps"), stages(), ids=[s[0] for s in stages()])
def test_stage_deps_cover_every_import(name, cmd, deps):
    missing = uncovered(cmd, deps)
    assert not missing, f"dvc.yaml stage {name} imports {missing} without listing them in its deps"


@pytest.mark.parametrize(("name", "cmd", "deps"), stages(), ids=[s[0] for s in stages()])
def test_no_stage_depends_on_the_studies_or_the_report(name, cmd, deps):
    imported = {p.relative_to(ROOT).as_posix() for p in imported_files(module_file(cmd.split()[2]))}
    assert not {p for p in imported if p.startswith(("tuninglab/studies/", "tuninglab/report/"))}
    assert not {d for d in deps if d.startswith(("tuninglab/studies", "tuninglab/report"))}


def test_a_stage_whose_deps_lack_an_import_is_caught():
    _, cmd, deps = next(stage for stage in stages() if stage[0] == "train")
    assert "tuninglab/lab/training.py" in uncovered(cmd, [d for d in deps if d != "tuninglab/lab"])
    assert uncovered(cmd, [d for d in deps if d != "tuninglab/schema.py"]) == ["tuninglab/schema.py"]


def test_the_walk_finds_imports_inside_functions():
    files = {p.relative_to(ROOT).as_posix() for p in imported_files(ROOT / "stages" / "train.py")}
    assert {"tuninglab/lab/training.py", "tuninglab/lab/models.py", "tuninglab/schema.py"} <= files


def dvc_spec() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def resolved(stage: str, dataset: str) -> dict:
    """One foreach stage of dvc.yaml for one dataset: `${item}` replaced by its name.

    A stage over a map (train over `test_plots`) has the dataset in `${key}` and its value in `${item}`.
    """
    stanza = dvc_spec()["stages"][stage]
    text = yaml.safe_dump(stanza["do"])
    if stanza["foreach"] == "${test_plots}":
        text = text.replace("${key}", dataset).replace("${item}", dvc_test_plots()[dataset])
    return yaml.safe_load(text.replace("${item}", dataset))


def dvc_test_plots() -> dict[str, str]:
    """dvc.yaml's map of each dataset to the name of its test plot."""
    return next(var["test_plots"] for var in dvc_spec()["vars"] if "test_plots" in var)


def out_paths(body: dict) -> list[str]:
    return [next(iter(out)) if isinstance(out, dict) else out for out in body["outs"]]


def test_the_dvc_datasets_list_is_the_registry():
    assert dvc_spec()["vars"][0]["datasets"] == list(dataset_names())


def test_the_test_plot_of_each_dataset_is_the_one_of_its_task():
    assert dvc_test_plots() == {d: datasets.get(d).task.test_plot for d in dataset_names()}


@pytest.mark.parametrize("dataset", dataset_names())
def test_train_outs_are_the_model_folder_and_exactly_the_schemas_files(dataset):
    body = resolved("train", dataset)
    model_dir = body["cmd"].split()[-1]
    test_plot = datasets.get(dataset).task.test_plot
    schema_files = [schema.metrics_path(dataset, name) for name in ("test", "train", "details")] + [
        schema.plots_path(dataset, name) for name in ("history", test_plot)
    ]
    outs = out_paths(body)
    assert outs[0] == model_dir
    assert sorted(outs[1:]) == sorted(path.as_posix() for path in schema_files)


@pytest.mark.parametrize("dataset", dataset_names())
@pytest.mark.parametrize("stage", ["download", "prepare", "train"])
def test_each_stage_reads_its_deps_and_writes_its_outs(stage, dataset):
    """A command's folder arguments: the deps it reads, then its first out, the folder it writes."""
    body = resolved(stage, dataset)
    _, _, _, name, *folders = body["cmd"].split()
    assert name == dataset
    *inputs, output = folders
    assert set(inputs) <= {str(dep) for dep in body["deps"]}
    assert output == out_paths(body)[0]


def test_the_metrics_list_is_every_datasets_test_then_train_file_in_registry_order():
    """`dvc exp show` compares every dataset's test metrics first, then how training went."""
    expected = [
        schema.metrics_path(d, name).as_posix() for name in ("test", "train") for d in dataset_names()
    ]
    assert dvc_spec()["metrics"] == expected


def test_each_datasets_plots_read_its_history_and_its_tasks_test_plot():
    files: dict[str, set[str]] = {}
    for plot in dvc_spec()["plots"]:
        (title, body), *_ = plot.items()
        dataset = title.split()[0]
        files.setdefault(dataset, set()).update(body["y"])
    assert list(files) == list(dataset_names())
    for dataset, read in files.items():
        test_plot = datasets.get(dataset).task.test_plot
        expected = {schema.plots_path(dataset, name).as_posix() for name in ("history", test_plot)}
        assert read == expected, dataset
