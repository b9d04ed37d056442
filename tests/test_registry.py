"""The dataset registry: every spec agrees with params.yaml, and a new dataset needs no other module.

A toy fourth dataset, registered for one test, goes through the download,
prepare and train stages as dvc.yaml would run them, in a temporary folder.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import download as download_stage
from stages import prepare as prepare_stage
from stages import train as train_stage
from tests import image_fixtures
from tests.conftest import ROOT, blobs, commit_all, make_lab_repo, sh
from tuninglab import schema, tasks
from tuninglab.lab import datasets, families, models, params, prepare, resources
from tuninglab.lab.datasets import DatasetSpec, dataset_names
from tuninglab.lab.files import write_csv
from tuninglab.lab.kinds import image, tabular, text
from tuninglab.lab.rules import BOOL, int_at_least

TOY_ROWS, TOY_FEATURES = 120, 5


def fetch_blobs(path: Path) -> dict[str, Any]:
    """Three well separated Gaussian blobs as a CSV of features and a label."""
    x, y = blobs(n_per_class=TOY_ROWS // 3, n_features=TOY_FEATURES, seed=1)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(TOY_FEATURES)])
    frame["label"] = np.array(["a", "b", "c"])[y]
    write_csv(path, frame)
    return {"source": "blobs", "rows": len(frame), "classes": frame["label"].value_counts().to_dict()}


TOY = DatasetSpec(
    name="toy",
    sources={"blobs": fetch_blobs},
    raw_file="blobs.csv",
    read_raw=tabular.read_table,
    featurize=tabular.prepare_tabular,
    families=("mlp",),
    input_size=lambda data: (TOY_ROWS, TOY_FEATURES),
    classes=3,
    data_settings={"normalize": BOOL, "min_level_rows": int_at_least(1)},
)


@pytest.fixture
def toy(monkeypatch) -> DatasetSpec:
    """The toy dataset, registered for one test only (the registry is restored afterwards)."""
    datasets.dataset_names()  # every data type's module registered before the copy
    monkeypatch.setattr(datasets, "REGISTRY", dict(datasets.REGISTRY))
    return datasets.register(TOY)


def stage_args(stage: str, dataset: str) -> list[Any]:
    """The dataset and folder arguments dvc.yaml gives a stage for `dataset` (`${item}`; train's `${key}`)."""
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["do"]["cmd"]
    _, _, _, name, *folders = cmd.replace("${item}", dataset).replace("${key}", dataset).split()
    return [name, *map(Path, folders)]


def test_a_new_dataset_needs_its_spec_and_params_group_only(toy, tmp_path, monkeypatch):
    settings = params.read_yaml(ROOT / "params.yaml")
    settings["toy"] = {
        "data": {"source": "blobs", "normalize": True, "min_level_rows": 5},
        "train": {"epochs": 20, "lr": 0.05},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    monkeypatch.chdir(tmp_path)

    resources.check(params.load())  # the check_params stage
    download_stage.main(*stage_args("download", "toy"))
    prepare_stage.main(*stage_args("prepare", "toy"))
    train_stage.main(*stage_args("train", "toy"))

    provenance = json.loads(Path("data/raw/toy/provenance.json").read_text())
    assert provenance["dataset"] == "toy" and provenance["file"] == "blobs.csv"
    test = json.loads(schema.metrics_path("toy", "test").read_text())
    trained = json.loads(schema.metrics_path("toy", "train").read_text())
    assert list(test) == list(trained) == ["toy"]
    assert (
        tuple(test["toy"]) == tasks.CLASSIFICATION.test_file_keys
        and tuple(trained["toy"]) == schema.TRAIN_METRICS
    )
    assert tuple(json.loads(schema.metrics_path("toy", "details").read_text())) == (
        *schema.DETAILS,
        schema.PER_REPEAT,
    )
    history = pd.read_csv(schema.plots_path("toy", "history"))
    # the mean curve runs as long as the longest repeat
    longest = max(
        r["epochs_run"] for r in json.loads(schema.metrics_path("toy", "details").read_text())["per_repeat"]
    )
    assert tuple(history.columns) == schema.HISTORY_COLUMNS and len(history) == longest
    confusion = pd.read_csv(schema.plots_path("toy", "confusion"))
    assert tuple(confusion.columns) == schema.CONFUSION_COLUMNS
    assert test["toy"]["test_accuracy"] > test["toy"]["chance_accuracy"] + 0.3
    model, cfg = models.load(Path("models/toy"))
    assert cfg.epochs == 20 and cfg.lr == 0.05
    assert model[1][0].in_features == TOY_FEATURES


# A data type as its own module, as a user adds one: tuninglab/lab/kinds/toy.py.
TOY_KIND = """\"\"\"A toy data type: three Gaussian blobs of five features and a class label.\"\"\"

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuninglab.lab.datasets import DatasetSpec, register
from tuninglab.lab.files import write_csv
from tuninglab.lab.kinds import image, tabular, text
from tuninglab.lab.rules import BOOL, int_at_least

ROWS, FEATURES = 120, 5


def fetch_blobs(path: Path) -> dict[str, Any]:
    \"\"\"Three well separated blobs as a CSV of features and a label.\"\"\"
    generator = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), ROWS // 3)
    frame = pd.DataFrame(generator.normal(size=(ROWS, FEATURES)) + 4 * labels[:, None])
    frame.columns = [f"f{i}" for i in range(FEATURES)]
    frame["label"] = np.array(["a", "b", "c"])[labels]
    write_csv(path, frame)
    return {"source": "blobs", "rows": ROWS, "classes": frame["label"].value_counts().to_dict()}


register(
    DatasetSpec(
        name="toy",
        sources={"blobs": fetch_blobs},
        raw_file="blobs.csv",
        read_raw=tabular.read_table,
        featurize=tabular.prepare_tabular,
        families=("mlp",),
        input_size=lambda data: (ROWS, FEATURES),
        classes=3,
        data_settings={"normalize": BOOL, "min_level_rows": int_at_least(1)},
    )
)
"""


def add_toy_kind(repo: Path) -> None:
    """Add the toy data type to a copy of the project the way a user would: its module, its params.yaml
    group, its name in dvc.yaml's lists and its data/local/ folder, and nothing else."""
    (repo / "tuninglab/lab/kinds/toy.py").write_text(TOY_KIND)
    settings = yaml.safe_load((repo / "params.yaml").read_text())
    settings["toy"] = {
        "data": {"source": "blobs", "normalize": True, "min_level_rows": 5},
        "train": {"epochs": 20, "lr": 0.05},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    pipeline = yaml.safe_load((repo / "dvc.yaml").read_text())
    pipeline["vars"][0]["datasets"].append("toy")
    pipeline["vars"][1]["test_plots"]["toy"] = "confusion"
    pipeline["metrics"] += ["metrics/toy/test.json", "metrics/toy/train.json"]
    pipeline["plots"].append(
        {
            "toy test confusion": {
                "template": "confusion",
                "x": "actual",
                "y": {"plots/toy/confusion.csv": "predicted"},
            }
        }
    )
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (repo / "data/local/toy").mkdir(parents=True)
    (repo / "data/local/toy/README").write_text("The toy data type's own files.\n")


@pytest.mark.slow
def test_a_new_data_type_module_runs_through_dvc_repro(tmp_path):
    repo = make_lab_repo(tmp_path)
    add_toy_kind(repo)
    commit_all(repo, "a toy data type")
    names = sh(repo, "python", "-c", "from tuninglab.lab import datasets; print(*datasets.dataset_names())")
    assert names.stdout.split() == [*dataset_names(), "toy"]
    sh(repo, "dvc", "repro", "train@toy")
    test = json.loads((repo / schema.metrics_path("toy", "test")).read_text())["toy"]
    assert tuple(test) == tasks.CLASSIFICATION.test_file_keys
    assert test["test_accuracy"] > test["chance_accuracy"] + 0.3
    meta = json.loads((repo / "data/prepared/toy/meta.json").read_text())
    assert (meta["kind"], meta["task"]) == ("toy", "classification")
    shown = sh(repo, "dvc", "metrics", "show", "--json").stdout
    assert "toy" in json.loads(shown)[""]["data"]["metrics/toy/test.json"]["data"]


def test_a_second_image_group_trains_through_the_stages(tmp_path, monkeypatch):
    """A `cifar` group of kind image beside the `image` group: a resnet with crop_flip on a CIFAR fixture."""
    import urllib.request

    root = tmp_path / "torchvision"
    image_fixtures.write_cifar10(root, (8, 3))
    image_fixtures.accept_cifar10_fixture(monkeypatch, root)
    monkeypatch.setenv(image.TORCHVISION_ROOT_VARIABLE, str(root))
    monkeypatch.setattr(urllib.request, "urlopen", None)  # the files are there: no download is tried
    settings = params.read_yaml(ROOT / "params.yaml")
    cifar_train = {
        "model": "resnet",
        "resnet_width": 4,
        "augment": True,
        "augment_set": "crop_flip",
        "epochs": 2,
    }
    settings["cifar"] = {
        "data": {"kind": "image", "source": "cifar10", "normalize": True},
        "train": {**settings["image"]["train"], **cifar_train},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    monkeypatch.chdir(tmp_path)

    resources.check(params.load())  # the check_params stage
    download_stage.main(*stage_args("download", "cifar"))
    prepare_stage.main(*stage_args("prepare", "cifar"))
    train_stage.main(*stage_args("train", "cifar"))

    provenance = json.loads(Path("data/raw/cifar/provenance.json").read_text())
    assert (provenance["dataset"], provenance["kind"], provenance["source"]) == ("cifar", "image", "cifar10")
    meta = json.loads(Path("data/prepared/cifar/meta.json").read_text())
    assert meta["input_shape"] == [3, 32, 32] and meta["official_test"] is True
    assert meta["splits"]["test"]["rows"] == 30 and len(meta["preprocessing"]["scaling"]["mean"]) == 3
    assert list(json.loads(schema.metrics_path("cifar", "test").read_text())) == ["cifar"]
    assert json.loads(schema.metrics_path("cifar", "train").read_text())["cifar"]["epochs_run"] == 2
    saved = json.loads(Path("models/cifar/model.json").read_text())
    assert (saved["dataset"], saved["kind"], saved["family"]) == ("cifar", "image", "resnet")
    model, cfg = models.load(Path("models/cifar"))
    assert cfg.augment_set == "crop_flip" and model[0].in_channels == 3
    assert not Path("data/raw/image").exists()  # the image group is another dataset


def test_the_toy_is_known_to_the_checks_while_registered(toy):
    with pytest.raises(params.ParamError, match=r"params\.yaml\.toy: missing"):
        params.validate(params.read_yaml(ROOT / "params.yaml"))
    assert params.value_range("toy.train.lr") == (0.0, None)
    assert params.value_range("toy.data.normalize") is None


@pytest.mark.parametrize("name", dataset_names())
def test_each_spec_agrees_with_its_params_group(name):
    spec = datasets.get(name)
    group = params.read_yaml(ROOT / "params.yaml")[name]
    data_rules, model_rules = datasets.data_rules(spec), datasets.model_rules(spec)
    assert list(group["data"]) == list(data_rules)
    overrides = group["train"] or {}
    assert set(model_rules) <= set(overrides)
    assert set(overrides) - set(model_rules) <= set(params.TRAIN_RULES)
    assert data_rules["source"].choices == tuple(spec.sources)
    assert group["data"]["source"] in spec.sources
    assert spec.size_param in data_rules
    assert set(spec.families) <= set(families.FAMILIES)
    if len(spec.families) > 1:
        assert model_rules["model"].choices == spec.families
    else:
        assert "model" not in model_rules
    assert ("augment" in model_rules and "augment_strength" in model_rules) == spec.augments
    assert set(model_rules) <= {field.name for field in dataclasses.fields(params.TrainConfig)}
    assert (ROOT / datasets.LOCAL_DATA / name).is_dir()  # a dependency of its download stage


def test_every_shipped_source_has_the_sizes_its_memory_check_reads():
    """A shipped source missing from its type's size table would size its memory check as 0."""
    assert set(text.SHIPPED_TEXT_ROWS) == set(text.SHIPPED_TEXT_BAG) == set(datasets.get("text").sources)
    assert {*datasets.get("tabular").sources, *datasets.get("regression").sources} == set(
        tabular.SHIPPED_TABLES
    )
    assert set(image.IMAGE_SIZES) == set(datasets.get("image").sources)


def test_the_family_is_the_only_one_or_the_one_the_model_setting_picks():
    assert datasets.family(datasets.get("tabular"), None) == "mlp"
    assert datasets.family(datasets.get("image"), "cnn") == "cnn"
    assert datasets.family(datasets.get("image"), "mlp") == "mlp"
    assert datasets.family(datasets.get("text"), None) == "embedding_bag"


def test_the_registry_and_the_checks_load_without_torch_or_scikit_learn():
    """The report and the check_params stage read the registry: it names model families, builds none."""
    code = (
        "import sys; import tuninglab.lab.datasets, tuninglab.lab.resources; "
        "print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# The registry's own modules: the only code that may name a task or a data type (a data type's own
# module, in tuninglab/lab/kinds/, names itself).
REGISTRY_MODULES = {
    Path("tuninglab/tasks.py"),
    Path("tuninglab/lab/datasets.py"),
    *(path.relative_to(ROOT) for path in (ROOT / "tuninglab/lab/kinds").glob("*.py")),
}
# The torch side of each task, looked up by its name: one table each, with every task.
TASK_TABLES = {
    Path("tuninglab/lab/prepare.py"): "PREPARERS",
    Path("tuninglab/lab/training.py"): "TASKS",
    Path("tuninglab/lab/evaluation.py"): "EVALUATORS",
    Path("tuninglab/lab/models.py"): "OUTPUTS",
}
# Keys only one task's meta.json or provenance.json has: testing for one guesses the task.
TASK_KEYS = {"classes", "target", "chance_accuracy", "chance_r2"}
TASK_CONSTANTS = {"CLASSIFICATION", "REGRESSION"}


def _names_a_task_or_kind(node: ast.AST, names: set[str]) -> bool:
    """A string naming a task or a data type, a task constant, or a literal collection holding one."""
    if isinstance(node, ast.Constant):
        return node.value in names
    if isinstance(node, ast.Attribute):  # `tasks.REGRESSION.name` as well as `REGRESSION`
        return node.attr in TASK_CONSTANTS or _names_a_task_or_kind(node.value, names)
    if isinstance(node, ast.Name):
        return node.id in TASK_CONSTANTS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_task_or_kind(element, names) for element in node.elts)
    return False


def branches(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    """Each place in a module that branches on a task or data type's name, with its line.

    A comparison with such a name (`task == "regression"`, `{"image", "tabular"} <= ...`), a table
    keyed by two or more of them, and a test for a key only one task writes (`"classes" in meta`).
    """
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_names_a_task_or_kind(operand, names) for operand in operands):
                found.append((node.lineno, "comparison"))
            elif (
                any(isinstance(op, ast.In | ast.NotIn) for op in node.ops)
                and isinstance(node.left, ast.Constant)
                and node.left.value in TASK_KEYS
            ):
                found.append((node.lineno, "key guess"))
        elif (
            isinstance(node, ast.Dict)
            and sum(key is not None and _names_a_task_or_kind(key, names) for key in node.keys) >= 2
        ):
            found.append((node.lineno, "table"))
    return found


def _without_task_table(tree: ast.Module, table: str | None) -> ast.Module:
    """The module less its task table's assignment (`TASK_TABLES`)."""

    def assigns_table(node: ast.stmt) -> bool:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        return any(isinstance(target, ast.Name) and target.id == table for target in targets)

    body = [node for node in tree.body if not assigns_table(node)]
    return ast.Module(body=body, type_ignores=[])


def test_no_module_outside_the_registry_branches_on_a_task_or_data_type_name():
    names = {*tasks.TASKS, *dataset_names()}
    files = [
        path.relative_to(ROOT)
        for folder in ("tuninglab/lab", "stages", "tuninglab/report")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    found = [
        f"{path}:{line} {what}"
        for path in files
        if path not in REGISTRY_MODULES
        for line, what in branches(
            _without_task_table(ast.parse((ROOT / path).read_text()), TASK_TABLES.get(path)), names
        )
    ]
    assert not found


def test_each_task_table_has_every_task_and_nothing_else():
    from tuninglab.lab import evaluation, training

    for table in (training.TASKS, evaluation.EVALUATORS, models.OUTPUTS, prepare.PREPARERS):
        assert set(table) == set(tasks.TASKS)


def test_the_branch_check_finds_each_kind_of_branch():
    code = (
        'if task == "regression": pass\n'
        'TABLE = {"image": 1, "text": 2}\n'
        'x = "classes" in meta\n'
        'y = {"image", "tabular"} <= set(names)\n'
        "z = datasets.REGRESSION != spec.task\n"
        "LOOKUP = {tasks.CLASSIFICATION.name: 1, tasks.REGRESSION.name: 2}\n"
        'column = {"text": 1, "label": 2}\n'
    )
    found = branches(ast.parse(code), {"regression", "image", "text", "tabular"})
    assert sorted(found) == [
        (1, "comparison"),
        (2, "table"),
        (3, "key guess"),
        (4, "comparison"),
        (5, "comparison"),
        (6, "table"),
    ]
