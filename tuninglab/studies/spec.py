"""Hyperparameter studies: read `studies.yaml` and expand a study into experiments.

A study is one-at-a-time (`ofat`), a full `grid`, or a `random` search. Each
configuration becomes one DVC experiment, named after what it changes
(`ofat-lr-0.1`, `optimizer_lr-optimizer-sgd-lr-0.01`, `random-03`) and run
with `dvc exp run --queue -n <name> -S <key>=<value> ...`. A name is only a
name: the hyperparameter it changed is the dotted key (`train.lr`) everywhere
else, in the results table and the report.

Every configuration is checked against the parameter rules before anything is
queued, so an unknown hyperparameter or a bad value is refused up front.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuninglab.lab import params
from tuninglab.report import format

STUDIES_FILE = Path("studies.yaml")
KINDS = ("ofat", "grid", "random")


class StudyError(ValueError):
    """A study definition that cannot be run."""


@dataclass(frozen=True)
class Experiment:
    """One configuration of a study: its name and the params it sets."""

    name: str
    settings: dict[str, Any]  # dotted params.yaml key -> value

    def matches(self, params_tree: dict[str, Any]) -> bool:
        """Whether a params tree has every setting of this experiment."""
        return all(_known(params_tree, k) and _lookup(params_tree, k) == v for k, v in self.settings.items())

    def applied_to(self, params_tree: dict[str, Any]) -> dict[str, Any]:
        """A copy of a params tree with this experiment's settings in it."""
        return _apply(params_tree, self.settings)

    def overrides(self) -> list[str]:
        """The `key=value` overrides of its params, as `dvc exp run -S` takes them."""
        return [f"{key}={format.override(value)}" for key, value in self.settings.items()]

    def set_args(self) -> list[str]:
        """The `-S key=value` arguments of `dvc exp run`."""
        return [arg for override in self.overrides() for arg in ("-S", override)]


def _short(hyperparameter: str) -> str:
    """`train.lr` -> `lr`; `tabular.data.normalize,image.data.normalize` -> `normalize`: for names only.

    Experiment names keep the short form (`ofat-lr-0.2`, not `ofat-train.lr-0.2`): they are the
    DVC refs of studies already run, and a study run resumes by finding its experiments by name.
    """
    return hyperparameter.split(",")[0].rsplit(".", 1)[-1]


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _apply(tree: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(tree)
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = changed
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return changed


def _settings(hyperparameter: str, value: Any) -> dict[str, Any]:
    return {key.strip(): value for key in hyperparameter.split(",")}


def _sample(rng: np.random.Generator, space: dict[str, Any]) -> Any:
    ((distribution, bounds),) = space.items()
    if distribution == "choice":
        return bounds[int(rng.integers(len(bounds)))]
    low, high = bounds
    if distribution == "log_uniform":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    return float(f"{value:.3g}")


def _is_distribution(space: Any) -> bool:
    """`{log_uniform: [low, high]}`, `{uniform: [low, high]}` or `{choice: [values...]}`."""
    if not (isinstance(space, dict) and len(space) == 1):
        return False
    ((distribution, bounds),) = space.items()
    if distribution == "choice":
        return isinstance(bounds, list) and bool(bounds)
    numbers = isinstance(bounds, list) and len(bounds) == 2 and all(params.is_number(b) for b in bounds)
    if distribution == "log_uniform":
        return numbers and 0 < bounds[0] < bounds[1]
    return distribution == "uniform" and numbers and bounds[0] < bounds[1]


def _check_definition(name: str, study: Any) -> None:
    where = f"{STUDIES_FILE}: study {name}"
    if not re.fullmatch(r"[a-z0-9_]+", str(name)):
        raise StudyError(f"{STUDIES_FILE}: study name {name!r} is not allowed; expected a-z, 0-9 and _")
    if not isinstance(study, dict) or study.get("kind") not in KINDS:
        kind = study.get("kind") if isinstance(study, dict) else study
        raise StudyError(f"{where}: kind {kind!r} is not allowed; expected one of {' | '.join(KINDS)}")
    allowed = {"kind", "params"} | ({"trials", "seed"} if study["kind"] == "random" else set())
    unknown = set(study) - allowed
    if unknown:
        raise StudyError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    space = study.get("params")
    if not isinstance(space, dict) or not space:
        raise StudyError(f"{where}: params is empty; expected hyperparameters and their values")
    for hyperparameter, values in space.items():
        if study["kind"] == "random" and not _is_distribution(values):
            raise StudyError(
                f"{where}: {hyperparameter}: {values!r} is not allowed; expected "
                "{log_uniform: [low, high]} with 0 < low < high, {uniform: [low, high]} with low < high, "
                "or {choice: [values...]}"
            )
        if study["kind"] != "random" and (not isinstance(values, list) or not values):
            raise StudyError(f"{where}: {hyperparameter} has no values; expected a non-empty list")
    if study["kind"] == "random":
        for key in ("trials", "seed"):
            if not isinstance(study.get(key), int) or isinstance(study.get(key), bool) or study[key] < 0:
                raise StudyError(
                    f"{where}: {key} {study.get(key)!r} is not allowed; expected an integer >= 0"
                )


def expand(name: str, study: dict[str, Any], baseline: dict[str, Any]) -> list[Experiment]:
    """The experiments of one study, in a stable order, each checked against the param rules.

    Args:
        name: the study's name (the prefix of every experiment name).
        study: its definition from `studies.yaml`.
        baseline: the validated params the experiments start from.

    Raises:
        StudyError: for a malformed study, an unknown hyperparameter or a value
            the param rules refuse; nothing has been queued then.
    """
    _check_definition(name, study)
    space: dict[str, Any] = study["params"]
    experiments: list[Experiment] = []
    if study["kind"] == "ofat":
        for hyperparameter, values in space.items():
            for value in values:
                settings = _settings(hyperparameter, value)
                experiment = Experiment(
                    f"{name}-{_short(hyperparameter)}-{format.name_part(value)}", settings
                )
                if not experiment.matches(baseline):  # else it is the baseline itself
                    experiments.append(experiment)
    elif study["kind"] == "grid":
        for combination in itertools.product(*space.values()):
            settings: dict[str, Any] = {}
            parts = [name]
            for hyperparameter, value in zip(space, combination, strict=True):
                settings |= _settings(hyperparameter, value)
                parts += [_short(hyperparameter), format.name_part(value)]
            experiments.append(Experiment("-".join(parts), settings))
    else:
        rng = np.random.default_rng(study["seed"])
        width = len(str(study["trials"]))
        for trial in range(1, study["trials"] + 1):
            settings = {}
            for hyperparameter, distribution in space.items():
                settings |= _settings(hyperparameter, _sample(rng, distribution))
            experiments.append(Experiment(f"{name}-{trial:0{width}d}", settings))
    for experiment in experiments:
        try:
            params.validate(experiment.applied_to(baseline))
        except params.ParamError as err:
            raise StudyError(f"{STUDIES_FILE}: study {name}, experiment {experiment.name}: {err}") from None
    return experiments


def _known(tree: dict[str, Any], dotted: str) -> bool:
    try:
        _lookup(tree, dotted)
    except (KeyError, TypeError):
        return False
    return True


def load(path: Path = STUDIES_FILE) -> dict[str, Any]:
    """All study definitions of the studies file."""
    try:
        studies = params.read_yaml(path)
    except FileNotFoundError:
        raise StudyError(f"{path}: not found; run from the repository root") from None
    if not isinstance(studies, dict) or not studies:
        raise StudyError(f"{path}: no studies; expected one entry per study")
    return studies


def plan(name: str, path: Path = STUDIES_FILE, baseline: dict[str, Any] | None = None) -> list[Experiment]:
    """The checked experiments of the study `name`.

    Args:
        name: a study of the studies file.
        path: the studies file.
        baseline: the validated params the experiments start from; by default
            the workspace's params.yaml.
    """
    studies = load(path)
    if name not in studies:
        raise StudyError(f"{path}: no study named {name!r}; studies: {', '.join(studies)}")
    return expand(name, studies[name], params.load() if baseline is None else baseline)
