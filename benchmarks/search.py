"""TPE against random search at equal budget, and successive halving against random at equal compute.

    python -m benchmarks.search                       20 trials, 3 sampler seeds, every dataset
    python -m benchmarks.search --trials 4 --seeds 1 --epochs 2 --datasets tabular   a quick check

Trains in this process with the lab's own trainer (`tuninglab.lab.training.train`) on the prepared
arrays of `data/prepared/<dataset>` (run `dvc repro` first), from params.yaml's settings, over the
space below (`SPACE`): learning rate, weight decay, dropout, hidden width and batch size. Each
method picks its run by the validation metric (best_val_accuracy; R^2 for a regression) and
reports that run's test score (the dataset's primary metric): the score a practitioner would get.

- random: `--trials` configurations drawn as a `random` study draws them (seed s), at `--epochs`.
- tpe: `--trials` trials of Optuna's TPE sampler (seed s), ask and tell, at `--epochs`.
- halving: the same random draws, successive halving with `--eta` from `--min-epochs` up to
  `--epochs` (`spec.rungs`, `search.promote`); beside it, random at equal compute: the first
  draws of the random run, at full epochs, whose summed training time fits in halving's.

Printed per dataset and method: the mean and standard deviation over the seeds of the chosen run's
test score, and the mean summed training seconds.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from tuninglab.lab import evaluation, params, training
from tuninglab.lab.files import load_arrays
from tuninglab.studies import search, spec

SPACE = {
    "train.lr": {"log_uniform": [0.0001, 0.1]},
    "train.weight_decay": {"log_uniform": [0.000001, 0.01]},
    "train.dropout": {"uniform": [0.0, 0.5]},
    "train.hidden": {"choice": [[32], [64], [128], [256]]},
    "train.batch_size": {"choice": [32, 64, 128]},
}

Run = tuple[float, float, float]  # validation metric, test score, training seconds


def trainer(dataset: str, settings: dict[str, Any], prepared: Path) -> Callable[[dict[str, Any], int], Run]:
    """A function training `dataset` with the baseline `settings` changed by a configuration, at some
    epochs: its validation metric (chance when it diverged at once), test score and training time."""
    arrays, meta = load_arrays(prepared / dataset)
    data_spec = params.dataset_spec(settings, dataset)
    task = data_spec.task

    def run(configuration: dict[str, Any], epochs: int) -> Run:
        tree = spec.Experiment("", configuration | {"train.epochs": epochs}).applied_to(settings)
        cfg = params.train_config(params.validate(tree), dataset)
        model, _, summary = training.train(data_spec.name, arrays, meta, cfg, torch.device("cpu"))
        if summary["best_epoch"] is None:
            test, _ = evaluation.untrained_results(task, meta)
        else:
            test, _ = evaluation.EVALUATORS[task.name](model, arrays["x_test"], arrays["y_test"], cfg, meta)
        chance = test[task.chance_metric]
        val = summary["best_val_accuracy"]
        primary = test[task.primary_metric]
        return (
            (chance if val is None else val),
            (chance if primary is None else primary),
            summary["train_time_s"],
        )

    return run


def best(runs: list[Run]) -> tuple[float, float]:
    """The test score of the run with the best validation metric, and the summed training seconds."""
    return max(runs, key=lambda r: r[0])[1], sum(r[2] for r in runs)


def random_search(study: spec.Study, run: Callable[[dict[str, Any], int], Run], epochs: int) -> list[Run]:
    """Every draw of the study, at `epochs`."""
    return [run(configuration, epochs) for configuration in study.draws()]


def tpe_search(study: spec.Study, run: Callable[[dict[str, Any], int], Run], epochs: int) -> list[Run]:
    """`trials` trials of TPE (seeded with the study's seed), each told its validation metric."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=study.seed)
    tuner = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = {key: search.distribution(space) for key, space in study.space.items()}
    runs = []
    for _ in range(study.trials):
        trial = tuner.ask(distributions)
        runs.append(run(search.settings_of(study, trial.params), epochs))
        tuner.tell(trial, runs[-1][0])
    return runs


def halving_search(
    study: spec.Study, run: Callable[[dict[str, Any], int], Run], epochs: int
) -> tuple[float, float]:
    """Successive halving of the study's draws up to `epochs`: the last rung's best test score, and the
    training seconds of every rung."""
    configurations = dict(enumerate(study.draws(), start=1))
    survivors, seconds, last = list(configurations), 0.0, []
    for _, rung_epochs in spec.rungs(study, epochs):
        last = [(c, run(configurations[c], rung_epochs)) for c in survivors]
        seconds += sum(r[2] for _, r in last)
        survivors = search.promote({c: r[0] for c, r in last}, study.eta)
    return max((r for _, r in last), key=lambda r: r[0])[1], seconds


def equal_compute(runs: list[Run], budget: float) -> tuple[float, float]:
    """Random search cut to the first runs whose summed training time fits in `budget` (at least one)."""
    kept, spent = [], 0.0
    for r in runs:
        if kept and spent + r[2] > budget:
            break
        kept.append(r)
        spent += r[2]
    return best(kept)


def main() -> None:
    """Run the three methods per dataset and seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=None, help="default: every dataset of params.yaml")
    parser.add_argument(
        "--trials", type=int, default=20, help="random and tpe trials; halving's configurations"
    )
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds 0, 1, ... (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="full epochs (default: params.yaml's)")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=3)
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    args = parser.parse_args()
    settings = params.load()
    epochs = args.epochs or spec.full_epochs(settings)
    datasets = args.datasets or list(params.dataset_groups(settings))
    print(
        f"{args.trials} trials, {args.seeds} seeds, {epochs} epochs; "
        f"halving eta {args.eta} from {args.min_epochs}"
    )
    print(f"{'dataset':<11} {'method':<26} {'test (mean)':>11} {'std':>7} {'train s':>8}")
    for dataset in datasets:
        run = trainer(dataset, settings, args.prepared)
        found: dict[str, list[tuple[float, float]]] = {}
        for seed in range(args.seeds):
            base = {"trials": args.trials, "seed": seed, "params": SPACE}
            drawn = spec.parse("random", {"kind": "random", **base})
            objective = {"objective": spec.MEAN_GAIN}  # not read here: each method maximizes `run`'s val
            tpe = spec.parse("tpe", {"kind": "tpe", **objective, **base})
            rungs = {"eta": args.eta, "min_epochs": args.min_epochs}
            halving = spec.parse("halving", {"kind": "halving", **objective, **rungs, **base})
            random_runs = random_search(drawn, run, epochs)
            halved = halving_search(halving, run, epochs)
            for method, result in (
                ("random", best(random_runs)),
                ("tpe", best(tpe_search(tpe, run, epochs))),
                ("halving", halved),
                ("random, halving's compute", equal_compute(random_runs, halved[1])),
            ):
                found.setdefault(method, []).append(result)
        for method, results in found.items():
            tests = [test for test, _ in results]
            spread = statistics.stdev(tests) if len(tests) > 1 else float("nan")
            seconds = float(np.mean([s for _, s in results]))
            print(f"{dataset:<11} {method:<26} {np.mean(tests):11.4f} {spread:7.4f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
