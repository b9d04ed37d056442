"""Load `params.yaml`, check every value, and resolve each dataset's settings.

All checks run before any work starts, so a typo or a bad value ends a stage
with one line that names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuninglab.lab import datasets
from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.rules import (
    BOOL,
    Rule,
    auto_or_int_at_least,
    choice,
    int_at_least,
    int_list,
    number_in,
    positive_number,
)
from tuninglab.lab.rules import is_number as is_number  # re-exported: the study specs check bounds with it

PARAMS_FILE = Path("params.yaml")


class ParamError(ValueError):
    """A parameter is missing, unknown or has a value that is not allowed."""


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading `1e-05` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot; DVC writes values set
    with `-S` in YAML 1.2 style, so `-S train.weight_decay=1e-5` arrives as `1e-05`.
    """


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789.")
)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with `YamlLoader`."""
    return yaml.load(Path(path).read_text(), Loader=YamlLoader)


SPLIT_RULES: dict[str, Rule] = {
    "seed": int_at_least(0),
    "val_size": number_in(0.01, 0.5),
    "test_size": number_in(0.01, 0.5),
}

TRAIN_RULES: dict[str, Rule] = {
    "seed": int_at_least(0),
    "device": choice("auto", "cpu", "cuda"),
    "threads": auto_or_int_at_least(1),
    "epochs": int_at_least(1),
    "patience": int_at_least(0),
    "batch_size": int_at_least(1),
    "lr": positive_number(),
    "optimizer": choice("sgd", "adam", "rmsprop"),
    "momentum": number_in(0.0, 1.0, high_open=True),
    "nesterov": BOOL,
    "scheduler": choice("none", "step", "cosine", "plateau"),
    "step_size": int_at_least(1),
    "gamma": number_in(0.0, 1.0, high_open=True),
    "loss": choice(*datasets.CLASSIFIER_LOSSES),
    "hidden": int_list(0, 8),
    "activation": choice("relu", "tanh", "leaky_relu", "sigmoid"),
    "dropout": number_in(0.0, 1.0, high_open=True),
    "weight_decay": number_in(0.0, 1.0),
    "l1": number_in(0.0, 1.0),
    "amp": BOOL,
    "select_by": choice("val_loss", "val_metric"),
    "repeats": int_at_least(1),
}
# Each dataset's own settings (`<dataset>.data`, and its model families' settings
# under `<dataset>.train` next to optional overrides of the shared `train`
# values) are declared by its spec in `datasets`. A task with other losses
# (regression) must set `<dataset>.train.loss`: `datasets.task_rules`.


def _show(value: Any) -> str:
    """Render a value the way it is written in params.yaml."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def _check_keys(group: Any, where: str, allowed: dict[str, Any], *, required: bool) -> None:
    if not isinstance(group, dict):
        raise ParamError(f"{where}: {_show(group)} is not allowed; expected a mapping of settings")
    for key in group:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), list(allowed), n=1)
            did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
            names = ", ".join(allowed) or "none"
            raise ParamError(f"{where}.{key}: unknown parameter{did_you_mean}; allowed: {names}")
    if required:
        for key in allowed:
            if key not in group:
                raise ParamError(f"{where}.{key}: missing; add it to params.yaml")


def _check_values(group: dict[str, Any], where: str, rules: dict[str, Rule]) -> None:
    for key, value in group.items():
        rule = rules[key]
        if not rule.check(value):
            raise ParamError(f"{where}.{key}: {_show(value)} is not allowed; expected {rule.allowed}")


def _check_train(cfg: dict[str, Any], where: str) -> None:
    """Checks that involve more than one training value."""
    if cfg["nesterov"] and not (cfg["optimizer"] == "sgd" and cfg["momentum"] > 0):
        raise ParamError(
            f"{where}.nesterov: true is not allowed with optimizer {cfg['optimizer']} and "
            f"momentum {cfg['momentum']}; nesterov needs optimizer sgd and momentum > 0"
        )


KIND = "kind"  # `<group>.data.kind`: the data type of a dataset group not named after one
SHARED_GROUPS = ("split", "train")


def _names_a_kind(group: Any) -> bool:
    """Whether a params.yaml group says its data type (`data.kind`)."""
    return isinstance(group, dict) and isinstance(group.get("data"), dict) and KIND in group["data"]


def dataset_groups(params: dict[str, Any]) -> tuple[str, ...]:
    """The dataset groups of a params tree, in file order: every group besides `split` and `train`.

    A group named after a data type (`image`) is of that type; any other name
    (`cifar`) says its type in `<group>.data.kind`. `dvc.yaml`'s `datasets`
    list picks which of them the pipeline runs.
    """
    return tuple(
        name
        for name, group in params.items()
        if name not in SHARED_GROUPS and (name in dataset_names() or _names_a_kind(group))
    )


def kind_of(params: dict[str, Any], group: str) -> str:
    """The data type of a dataset group: its `data.kind`, else the group's own name."""
    return params[group]["data"].get(KIND, group)


def dataset_spec(params: dict[str, Any], group: str) -> datasets.DatasetSpec:
    """The spec of the data type a dataset group of validated params trains on.

    Raises:
        ParamError: when `group` is not a dataset group of `params`.
    """
    if group not in dataset_groups(params):
        names = ", ".join(dataset_groups(params))
        raise ParamError(f"{group}: not a dataset group of params.yaml; expected one of {names}")
    return datasets.get(kind_of(params, group))


def _check_groups(params: Any) -> None:
    """The top level: `split`, `train`, a group per data type, and other dataset groups with a `data.kind`."""
    if not isinstance(params, dict):
        raise ParamError(f"params.yaml: {_show(params)} is not allowed; expected a mapping of settings")
    required = [*SHARED_GROUPS, *dataset_names()]
    for key in params:
        if key not in required and not _names_a_kind(params[key]):
            hint = difflib.get_close_matches(str(key), required, n=1)
            did_you_mean = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ParamError(
                f"params.yaml.{key}: unknown parameter{did_you_mean}; allowed: {', '.join(required)}, "
                f"or a dataset group whose data.{KIND} names its data type"
            )
    for key in required:
        if key not in params:
            raise ParamError(f"params.yaml.{key}: missing; add it to params.yaml")


def _kind_rule() -> Rule:
    """`<group>.data.kind`: one of the registered data types."""
    return choice(*dataset_names())


def _checked_spec(data: Any, group: str) -> datasets.DatasetSpec:
    """The spec `<group>.data.kind` (or the group's name) names, once that value is checked."""
    if isinstance(data, dict) and KIND in data:
        rule = _kind_rule()
        if not rule.check(data[KIND]):
            raise ParamError(
                f"{group}.data.{KIND}: {_show(data[KIND])} is not allowed; expected {rule.allowed}"
            )
        return datasets.get(data[KIND])
    return datasets.get(group)


def validate(params: Any) -> dict[str, Any]:
    """Check the whole parameter tree and return it unchanged.

    Raises:
        ParamError: on the first problem, naming the parameter, its value and
            what is allowed.
    """
    _check_groups(params)
    _check_keys(params["split"], "split", SPLIT_RULES, required=True)
    _check_values(params["split"], "split", SPLIT_RULES)
    if params["split"]["val_size"] + params["split"]["test_size"] >= 0.9:
        raise ParamError(
            "split: val_size + test_size = "
            f"{params['split']['val_size'] + params['split']['test_size']:g} is not allowed; "
            "expected less than 0.9 so training keeps enough rows"
        )
    _check_keys(params["train"], "train", TRAIN_RULES, required=True)
    _check_values(params["train"], "train", TRAIN_RULES)
    for dataset in dataset_groups(params):
        group = params[dataset]
        _check_keys(group, dataset, {"data": None, "train": None}, required=True)
        spec = _checked_spec(group["data"], dataset)
        data_rules = datasets.data_rules(spec)
        _check_keys(group["data"], f"{dataset}.data", {KIND: None, **data_rules}, required=False)
        for key in data_rules:
            if key not in group["data"]:
                raise ParamError(f"{dataset}.data.{key}: missing; add it to params.yaml")
        _check_values(group["data"], f"{dataset}.data", {KIND: _kind_rule(), **data_rules})
        model_rules = datasets.model_rules(spec)
        own_rules = {**datasets.task_rules(spec), **model_rules}
        train_rules = {**TRAIN_RULES, **own_rules}
        overrides = group["train"] if group["train"] is not None else {}
        _check_keys(overrides, f"{dataset}.train", train_rules, required=False)
        for key in own_rules:
            if key not in overrides:
                raise ParamError(f"{dataset}.train.{key}: missing; add it to params.yaml")
        _check_values(overrides, f"{dataset}.train", train_rules)
        _check_train({**params["train"], **overrides}, f"{dataset}.train")
    return params


def load(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read and validate the parameter file."""
    try:
        params = read_yaml(path)
    except FileNotFoundError:
        raise ParamError(f"{path}: not found; run from the repository root") from None
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML ({err})") from None
    return validate(params)


def train_settings(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The training settings of one dataset as a dict: shared `train` updated by `<dataset>.train`.

    The results table's `train.*` columns; training itself reads `train_config`.
    """
    return {**params["train"], **(params[dataset]["train"] or {})}


@dataclass(frozen=True)
class TrainConfig:
    """The training settings of one dataset run: each field is the param of the same name.

    The shared `train` settings come first; the settings of one model family
    (`<dataset>.train.model`, `channels`, ...) are None for the other families.
    """

    seed: int
    device: str
    threads: int | str
    epochs: int
    patience: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    nesterov: bool
    scheduler: str
    step_size: int
    gamma: float
    loss: str
    hidden: list[int]
    activation: str
    dropout: float
    weight_decay: float
    l1: float
    amp: bool
    select_by: str = "val_loss"
    repeats: int = 1
    model: str | None = None
    channels: list[int] | None = None
    batch_norm: bool | None = None
    augment: bool | None = None
    augment_strength: float | None = None
    embedding_dim: int | None = None
    pooling: str | None = None
    resnet_width: int | None = None
    resnet_depth: int | None = None
    augment_set: str | None = None


def train_config(params: dict[str, Any], dataset: str) -> TrainConfig:
    """The training settings of one dataset: shared `train` updated by `<dataset>.train`."""
    return TrainConfig(**train_settings(params, dataset))


def value_range(key: str) -> tuple[float | None, float | None] | None:
    """The allowed numeric interval of a dotted param key; None for a setting that is not numeric.

    `train.weight_decay` gives (0.0, 1.0); `train.lr` gives (0.0, None): above
    0, no upper bound. A dataset's override (`image.train.lr`) has the shared
    key's range.
    """
    parts = key.split(".")
    if parts[0] == "split" and len(parts) == 2:
        rule = SPLIT_RULES.get(parts[1])
    elif parts[0] == "train" and len(parts) == 2:
        rule = TRAIN_RULES.get(parts[1])
    elif parts[0] in dataset_names() and len(parts) == 3 and parts[1] == "train":
        spec = datasets.get(parts[0])
        rule = {**TRAIN_RULES, **datasets.task_rules(spec), **datasets.model_rules(spec)}.get(parts[2])
    elif parts[0] in dataset_names() and len(parts) == 3 and parts[1] == "data":
        rule = datasets.data_rules(datasets.get(parts[0])).get(parts[2])
    else:
        rule = None
    if rule is None or (rule.low is None and rule.high is None):
        return None
    return rule.low, rule.high


def no_cuda(where: str) -> ParamError:
    """The error for `cuda` asked for at `where` (e.g. `train.device`) on a machine without a CUDA device."""
    return ParamError(f"{where}: cuda is not allowed here, no CUDA device is available; expected auto or cpu")
