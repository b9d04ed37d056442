"""Stage train: fit one dataset's model, score it on the test split, save both.

Outputs: the model folder (weights and the settings that made them); and, at
the paths `tuninglab.schema` names, metrics/<dataset>/test.json, train.json
(DVC metrics) and details.json (diagnostics), plots/<dataset>/history.csv and
the test plot of its task (confusion.csv, or a regression's predictions.csv).
Evaluation runs in the same process as training: one start-up per dataset
instead of two.

Usage: python -m stages.train DATASET PREPARED_DIR MODEL_DIR
"""

from collections.abc import Callable
from pathlib import Path

from tuninglab import schema
from tuninglab.lab import evaluation, models, params, training
from tuninglab.lab.files import atomic_dir, load_arrays, write_json, write_table
from tuninglab.lab.stage import run_stage


def log_epoch(dataset: str, epochs: int, quality: str = "acc") -> Callable[[dict[str, float]], None]:
    """A callback printing one line per epoch of `epochs`; `quality` names the accuracy columns."""

    def log(row: dict[str, float]) -> None:
        print(
            f"{dataset} epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
            f"{quality} {row['train_accuracy']:.3f}  val loss {row['val_loss']:.4f} "
            f"{quality} {row['val_accuracy']:.3f}  {row['epoch_time_s']:.2f}s",
            flush=True,
        )

    return log


def main(dataset: str, prepared_dir: Path, model_dir: Path) -> None:
    """Train on the arrays in `prepared_dir`, replace `model_dir` with the model, write metrics and plots."""
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
    model, history, summary = training.train(
        spec.name, arrays, meta, cfg, device, on_epoch=log_epoch(dataset, cfg.epochs, task.history_quality)
    )
    with atomic_dir(model_dir) as out:
        models.save(out, model, dataset, cfg, meta, spec.name)
    if summary["best_epoch"] is None:  # diverged in its first epoch: no trained weights to score
        test, rows = evaluation.untrained_results(task, meta)
    else:
        test, rows = evaluation.EVALUATORS[task.name](model, arrays["x_test"], arrays["y_test"], cfg, meta)
    columns = {k: [row[k] for row in history] for k in schema.HISTORY_COLUMNS}
    write_table(schema.plots_path(dataset, "history"), columns)
    write_table(schema.plots_path(dataset, task.test_plot), rows)
    details = {**summary, "test_loss": test["test_loss"]}
    write_json(schema.metrics_path(dataset, "details"), {k: details[k] for k in schema.DETAILS})
    write_json(
        schema.metrics_path(dataset, "train"), {dataset: {k: summary[k] for k in schema.TRAIN_METRICS}}
    )
    names = task.test_metrics
    write_json(schema.metrics_path(dataset, "test"), {dataset: {k: test[k] for k in names}})
    state = f"diverged at epoch {summary['diverged_epoch']}" if summary["diverged"] else "done"
    kept = f"best epoch {summary['best_epoch']}" if summary["best_epoch"] else "no trained epoch"
    shown = ", ".join(f"{k} {test[k]}" for k in names if test[k] is not None)
    print(
        f"{dataset}: {state}; {kept} of {summary['epochs_run']}, {summary['train_time_s']}s; "
        f"{summary['cpu_capability']} kernels; {shown}"
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
