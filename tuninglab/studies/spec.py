"""Hyperparameter studies: read `studies.yaml` and expand a study into experiments.

A study's strategy (`kind:` in `studies.yaml`, read once by `parse` into a
`Study`) is one-at-a-time (`ofat`), a full `grid`, or a `random` search. Each
configuration becomes one DVC experiment, named after what it changes
(`ofat-lr-0.1`, `optimizer_lr-optimizer-sgd-lr-0.01`, `random-03`) and run
with `dvc exp run --queue -n <name> -S <key>=<value> ...`. A name is only a
name: the hyperparameter it changed is the dotted key (`train.lr`) everywhere
else, in the results table and the report.

Every configuration is checked against the parameter rules before anything is
queued, so an unknown hyperparameter or a bad value is refused up front. A
study's size is counted without listing it (`count`): one above its limit
(`max_experiments`, by default `MAX_EXPERIMENTS`) is only planned or run when
the user allows it.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuninglab.lab import params

STUDIES_FILE = Path("studies.yaml")
STRATEGIES = ("ofat", "grid", "random")
STRATEGY_KEY = "kind"  # the key of a study's strategy in studies.yaml
MAX_EXPERIMENTS = 1000  # a study's most experiments without --allow-large, unless it sets max_experiments
SAMPLE = 100  # the experiments a study too large to list is estimated from


class StudyError(ValueError):
    """A study definition that cannot be run."""


def override(param: Any) -> str:
    """A param value as DVC's `-S` override grammar reads it back unchanged (`true`, `[64,32]`, `0.1`)."""
    if isinstance(param, bool):
        return str(param).lower()
    if isinstance(param, list):
        return "[" + ",".join(override(v) for v in param) + "]"
    return str(param)


def name_part(param: Any) -> str:
    """A param value as it appears in an experiment name: `0.1`, `128-128`, `none` for an empty list."""
    if isinstance(param, list):
        return "-".join(name_part(v) for v in param) if param else "none"
    return re.sub(r"[^A-Za-z0-9_.]+", "_", override(param))


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
        return [f"{key}={override(value)}" for key, value in self.settings.items()]

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


@dataclass(frozen=True)
class Study:
    """A checked study definition: how it explores (`strategy`) and over which values (`space`)."""

    name: str
    strategy: str  # one of STRATEGIES: the study's `kind:` in studies.yaml
    space: dict[str, Any]  # dotted hyperparameter -> its values (ofat, grid) or distribution (random)
    max_experiments: int  # its most experiments without --allow-large (by default MAX_EXPERIMENTS)
    trials: int = 0  # a random study's experiments
    seed: int = 0  # a random study's seed


def strategy_of(study: Any) -> str:
    """A study definition's strategy as `studies.yaml` gives it (`ofat`), unchecked; "" when it has none."""
    return str(study.get(STRATEGY_KEY, "")) if isinstance(study, dict) else ""


def parse(name: str, study: Any) -> Study:
    """A study definition of `studies.yaml`, checked, as a `Study`.

    Raises:
        StudyError: a bad name, strategy, setting or value, naming it and what is allowed.
    """
    where = f"{STUDIES_FILE}: study {name}"
    if not re.fullmatch(r"[a-z0-9_]+", str(name)):
        raise StudyError(f"{STUDIES_FILE}: study name {name!r} is not allowed; expected a-z, 0-9 and _")
    if not isinstance(study, dict) or study.get(STRATEGY_KEY) not in STRATEGIES:
        given = study.get(STRATEGY_KEY) if isinstance(study, dict) else study
        raise StudyError(
            f"{where}: {STRATEGY_KEY} {given!r} is not allowed; expected one of {' | '.join(STRATEGIES)}"
        )
    strategy = study[STRATEGY_KEY]
    allowed = {STRATEGY_KEY, "params", "max_experiments"} | (
        {"trials", "seed"} if strategy == "random" else set()
    )
    unknown = set(study) - allowed
    if unknown:
        raise StudyError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    space = study.get("params")
    if not isinstance(space, dict) or not space:
        raise StudyError(f"{where}: params is empty; expected hyperparameters and their values")
    for hyperparameter, values in space.items():
        if strategy == "random" and not _is_distribution(values):
            raise StudyError(
                f"{where}: {hyperparameter}: {values!r} is not allowed; expected "
                "{log_uniform: [low, high]} with 0 < low < high, {uniform: [low, high]} with low < high, "
                "or {choice: [values...]}"
            )
        if strategy != "random" and (not isinstance(values, list) or not values):
            raise StudyError(f"{where}: {hyperparameter} has no values; expected a non-empty list")
    integers = {"trials": 0, "seed": 0} if strategy == "random" else {}
    if "max_experiments" in study:
        integers["max_experiments"] = 1
    for key, least in integers.items():
        value = study.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise StudyError(f"{where}: {key} {value!r} is not allowed; expected an integer >= {least}")
    randomly = {key: study[key] for key in ("trials", "seed") if key in integers}
    return Study(str(name), strategy, space, study.get("max_experiments", MAX_EXPERIMENTS), **randomly)


def _ofat_experiment(name: str, hyperparameter: str, value: Any) -> Experiment:
    return Experiment(f"{name}-{_short(hyperparameter)}-{name_part(value)}", _settings(hyperparameter, value))


def _grid_experiment(name: str, space: dict[str, Any], combination: tuple[Any, ...]) -> Experiment:
    settings: dict[str, Any] = {}
    parts = [name]
    for hyperparameter, value in zip(space, combination, strict=True):
        settings |= _settings(hyperparameter, value)
        parts += [_short(hyperparameter), name_part(value)]
    return Experiment("-".join(parts), settings)


def _experiments(study: Study, baseline: dict[str, Any]) -> Iterator[Experiment]:
    """The experiments of a checked study, in order, one at a time and not yet checked against the rules."""
    name, space = study.name, study.space
    if study.strategy == "ofat":
        for hyperparameter, values in space.items():
            for value in values:
                experiment = _ofat_experiment(name, hyperparameter, value)
                if not experiment.matches(baseline):  # else it is the baseline itself
                    yield experiment
    elif study.strategy == "grid":
        for combination in itertools.product(*space.values()):
            yield _grid_experiment(name, space, combination)
    else:
        rng = np.random.default_rng(study.seed)
        width = len(str(study.trials))
        for trial in range(1, study.trials + 1):
            settings = {}
            for hyperparameter, distribution in space.items():
                settings |= _settings(hyperparameter, _sample(rng, distribution))
            yield Experiment(f"{name}-{trial:0{width}d}", settings)


def _checked(name: str, experiment: Experiment, baseline: dict[str, Any]) -> Experiment:
    """The experiment, once the param rules accept the baseline with its settings."""
    try:
        params.validate(experiment.applied_to(baseline))
    except params.ParamError as err:
        raise StudyError(f"{STUDIES_FILE}: study {name}, experiment {experiment.name}: {err}") from None
    return experiment


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
    checked = parse(name, study)
    return [_checked(name, experiment, baseline) for experiment in _experiments(checked, baseline)]


def count(name: str, study: dict[str, Any]) -> int:
    """How many experiments a study has, at most, without listing them: a random study's trials, a grid's
    product of its value counts, an ofat study's sum of them (values equal to the baseline's, which it
    skips, included).

    Raises:
        StudyError: for a malformed study.
    """
    return _count(parse(name, study))


def _count(study: Study) -> int:
    if study.strategy == "random":
        return study.trials
    lengths = [len(values) for values in study.space.values()]
    return math.prod(lengths) if study.strategy == "grid" else sum(lengths)


def limit(name: str, study: dict[str, Any]) -> int:
    """The most experiments the study may have without `--allow-large`: its `max_experiments`, by default
    `MAX_EXPERIMENTS`.

    Raises:
        StudyError: for a malformed study.
    """
    return parse(name, study).max_experiments


def _nth(study: Study, index: int) -> Experiment:
    """The `index`-th configuration of an ofat or grid study (0 <= index < `count`), found without listing
    the others (an ofat one equal to the baseline included)."""
    name, space = study.name, study.space
    if study.strategy == "ofat":
        for hyperparameter, values in space.items():
            if index < len(values):
                return _ofat_experiment(name, hyperparameter, values[index])
            index -= len(values)
        raise IndexError(index)
    combination = []
    for values in reversed(space.values()):  # the last hyperparameter varies fastest
        index, position = divmod(index, len(values))
        combination.append(values[position])
    return _grid_experiment(name, space, tuple(reversed(combination)))


def head(name: str, study: dict[str, Any], baseline: dict[str, Any], size: int) -> list[Experiment]:
    """The study's first `size` experiments, checked against the param rules, without listing the rest.

    Raises:
        StudyError: for a malformed study or a value the param rules refuse.
    """
    return _head(parse(name, study), baseline, size)


def _head(study: Study, baseline: dict[str, Any], size: int) -> list[Experiment]:
    experiments = itertools.islice(_experiments(study, baseline), size)
    return [_checked(study.name, experiment, baseline) for experiment in experiments]


def sample(
    name: str, study: dict[str, Any], baseline: dict[str, Any], size: int = SAMPLE
) -> list[Experiment]:
    """Up to `size` of the study's experiments spread over all of it, found without listing it, each
    checked against the param rules: what the estimate of a study too large to list is based on.

    A grid's or an ofat study's are drawn at random (seed 0) among its
    configurations, a random study's are its first trials (each drawn alike).

    Raises:
        StudyError: for a malformed study or a value the param rules refuse.
    """
    checked = parse(name, study)
    total = _count(checked)
    if checked.strategy == "random" or total <= size:
        return _head(checked, baseline, size)
    draw = random.Random(0)
    indices = sorted({draw.randrange(total) for _ in range(size)})
    picked = (_nth(checked, index) for index in indices)
    return [
        _checked(name, e, baseline) for e in picked if checked.strategy == "grid" or not e.matches(baseline)
    ]


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


def definition(name: str, path: Path = STUDIES_FILE) -> dict[str, Any]:
    """The definition of the study `name` in the studies file.

    Raises:
        StudyError: no such file, or no such study in it.
    """
    studies = load(path)
    if name not in studies:
        raise StudyError(f"{path}: no study named {name!r}; studies: {', '.join(studies)}")
    return studies[name]


def plan(name: str, path: Path = STUDIES_FILE, baseline: dict[str, Any] | None = None) -> list[Experiment]:
    """The checked experiments of the study `name`.

    Args:
        name: a study of the studies file.
        path: the studies file.
        baseline: the validated params the experiments start from; by default
            the workspace's params.yaml.
    """
    return expand(name, definition(name, path), params.load() if baseline is None else baseline)
