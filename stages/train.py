"""Stage train: fit one dataset's model, score it on the test split, save both.

Outputs: the model folder (weights and the settings that made them); and, at
the paths `tuninglab.schema` names, metrics/<dataset>/test.json, train.json
(DVC metrics) and details.json (diagnostics), plots/<dataset>/history.csv and
the test plot of its task (confusion.csv, or a regression's predictions.csv).
With `train.repeats` N, the configuration trains N times (seeds `train.seed`,
`train.seed + 1`, ...) and test.json holds each metric's mean and 95 %
half-width (`tuninglab.lab.repeats`). Evaluation runs in the same process as
training: one start-up per dataset instead of one per repeat and step.

Usage: python -m stages.train DATASET PREPARED_DIR MODEL_DIR
"""

from collections.abc import Callable
from pathlib import Path

from tuninglab import schema
from tuninglab.lab import models, params, repeats, training
from tuninglab.lab.files import atomic_dir, load_arrays, write_json, write_table
from tuninglab.lab.params import TrainConfig
from tuninglab.lab.stage import run_stage


def log_epoch(dataset: str, cfg: TrainConfig, quality: str) -> Callable[[int], training.EpochCallback]:
    """Per repeat r, a callback printing one line per epoch; `quality` names the accuracy columns."""

    def for_repeat(r: int) -> training.EpochCallback:
        label = f"{dataset} seed {cfg.seed + r}" if cfg.repeats > 1 else dataset

        def log(row: dict[str, float]) -> None:
            print(
                f"{label} epoch {row['epoch']:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                f"{quality} {row['train_accuracy']:.3f}  val loss {row['val_loss']:.4f} "
                f"{quality} {row['val_accuracy']:.3f}  {row['epoch_time_s']:.2f}s",
                flush=True,
            )

        return log

    return for_repeat


def main(dataset: str, prepared_dir: Path, model_dir: Path) -> None:
    """Train `train.repeats` times on `prepared_dir`'s arrays; replace `model_dir`; write metrics, plots."""
    p = params.load()
    cfg = params.train_config(p, dataset)
    spec = params.dataset_spec(p, dataset)
    task = spec.task
    device = training.resolve_device(cfg.device)
    if cfg.amp and not training.mixed_precision(cfg, device):
        print(f"{dataset}: train.amp is ignored on the CPU (mixed precision needs CUDA); training in float32")
    arrays, meta = load_arrays(prepared_dir)
    rows = len(arrays["y_train"])
    if cfg.batch_size > rows:
        print(
            f"{dataset}: train.batch_size {cfg.batch_size} is larger than the training split "
            f"({rows} rows); each step uses all {rows} rows"
        )
    on_epoch = log_epoch(dataset, cfg, task.history_quality)
    model, done = repeats.run(spec.name, task, arrays, meta, cfg, device, on_epoch)
    with atomic_dir(model_dir) as out:
        models.save(out, model, dataset, cfg, meta, spec.name)
    write_table(schema.plots_path(dataset, "history"), repeats.mean_history(done))
    write_table(schema.plots_path(dataset, task.test_plot), done[0].plot)
    write_json(schema.metrics_path(dataset, "details"), repeats.details(task, done))
    trained = repeats.train_metrics(done)
    write_json(schema.metrics_path(dataset, "train"), {dataset: trained})
    test = repeats.test_metrics(task, done)
    write_json(schema.metrics_path(dataset, "test"), {dataset: test})
    diverged = sum(r.summary["diverged"] for r in done)
    state = f"{diverged} of {len(done)} diverged" if diverged else "done"
    kept = f"best epoch {trained['best_epoch']}" if trained["best_epoch"] else "no trained epoch"
    shown = ", ".join(
        f"{k} {test[k]}"
        + (f" ± {test[schema.ci_name(k)]}" if test.get(schema.ci_name(k)) is not None else "")
        for k in task.test_metrics
        if test[k] is not None
    )
    print(
        f"{dataset}: {state}; {len(done)} repeat(s), first: {kept} of {trained['epochs_run']}; "
        f"{trained['train_time_s']}s; {trained['cpu_capability']} kernels; {shown}"
    )


if __name__ == "__main__":
    run_stage(
        main,
        __doc__,
        {
            "prepared_dir": "the prepare stage's folder",
            "model_dir": "the folder to write (replaced as a whole)",
        },
    )
