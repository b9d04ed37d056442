"""Stand-ins for `cluster.trial` that Ray workers run in tests/test_cluster.py: no clone, no dvc.

Each takes the arguments of `cluster.trial` and yields as it does (the node's
name, then an Outcome); the test passes a folder as `baseline`, where the fake
leaves its traces. A module of its own, so that a Ray worker imports it
without the test module's imports.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tuninglab.schema import FAILED, SUCCESS
from tuninglab.studies import cluster, spec

DIES = "dies"  # experiment names starting so kill their worker on every attempt; others on the first only


def dying_trial(remotes: cluster.Remotes, baseline: str, experiment: spec.Experiment) -> Iterator[object]:
    """Kill its own worker, as a lost node would: on its first attempt, or always for a `DIES` name.

    Each attempt leaves a file `<name>.<attempt>` in the folder `baseline`.
    """
    yield "node"
    folder = Path(baseline)
    attempt = len(list(folder.glob(f"{experiment.name}.*"))) + 1
    (folder / f"{experiment.name}.{attempt}").touch()
    if attempt == 1 or experiment.name.startswith(DIES):
        os._exit(1)
    yield cluster.Outcome(experiment.name, SUCCESS)


def sleeping_trial(remotes: cluster.Remotes, baseline: str, experiment: spec.Experiment) -> Iterator[object]:
    """Run a minute-long command as the real trial runs `dvc exp run`, in a folder removed when it ends.

    The command writes its process id to `<name>.pid` in the folder `baseline`
    once it runs; its folder is `<name>/` there.
    """
    yield "node"
    scratch = Path(baseline) / experiment.name
    scratch.mkdir()
    try:
        script = f"echo $$ > ../{experiment.name}.pid; sleep 60"
        cluster._command(["sh", "-c", script], scratch, scratch / "run.log", dict(os.environ))
    finally:
        shutil.rmtree(scratch)
    yield cluster.Outcome(experiment.name, SUCCESS)


def scoring_trial(remotes: cluster.Remotes, baseline: str, experiment: spec.Experiment) -> Iterator[object]:
    """Score the experiment's settings by a known function of `train.lr` and `train.dropout`, as a trial
    reports a run's metrics (tabular's test.json) and details; fail one of batch size 32, as a crashed run."""
    yield "node"
    settings = experiment.settings
    if int(settings["train.batch_size"]) == 32:
        yield cluster.Outcome(experiment.name, FAILED, error="error: batch_size 32 refused", node="node")
        return
    lr, dropout = float(settings["train.lr"]), float(settings["train.dropout"])
    val = 1.0 - (math.log10(lr) + 2.0) ** 2 / 10 - dropout / 5
    test = {"tabular": {"test_accuracy": val - 0.5, "chance_accuracy": 0.25}}
    train = {"tabular": {"epochs_run": int(settings.get("train.epochs", 0))}}
    yield cluster.Outcome(
        experiment.name,
        SUCCESS,
        metrics={"metrics/tabular/test.json": test, "metrics/tabular/train.json": train},
        details={"tabular": {"best_val_accuracy": val}},
    )
