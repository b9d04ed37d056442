"""Stage train: fit one dataset's model; save it, its per-epoch history and its training metrics.

Outputs: models/<dataset>/ (weights and the settings that made them),
metrics/<dataset>/train.json and plots/<dataset>/history.csv.
"""

from pathlib import Path

import pandas as pd

from tuninglab import models, params, training
from tuninglab.cli import run_stage
from tuninglab.files import atomic_dir, load_arrays, write_json


def log_epoch(dataset: str, epochs: int):
    def log(row: dict) -> None:
        print(
            f"{dataset} epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.3f}  val loss {row['val_loss']:.4f} "
            f"acc {row['val_accuracy']:.3f}  {row['epoch_time_s']:.2f}s",
            flush=True,
        )

    return log


def main(dataset: str) -> None:
    cfg = params.train_config(params.load(), dataset)
    device = training.resolve_device(cfg["device"])
    arrays, meta = load_arrays(Path("data/prepared") / dataset)
    model, history, summary = training.train(
        dataset, arrays, meta, cfg, device, on_epoch=log_epoch(dataset, cfg["epochs"])
    )
    with atomic_dir(Path("models") / dataset) as out:
        models.save(out, model, dataset, cfg, meta)
    plots = Path("plots") / dataset
    plots.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(history, columns=training.HISTORY_COLUMNS).to_csv(plots / "history.csv", index=False)
    write_json(Path("metrics") / dataset / "train.json", summary)
    state = f"diverged at epoch {summary['diverged_epoch']}" if summary["diverged"] else "done"
    print(
        f"{dataset}: {state}; best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"best val accuracy {summary['best_val_accuracy']}, {summary['train_time_s']}s"
    )


if __name__ == "__main__":
    run_stage(main, __doc__)
