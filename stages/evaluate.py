"""Stage evaluate: score the saved model on the test split.

Outputs: metrics/<dataset>/test.json and plots/<dataset>/confusion.csv.
"""

from pathlib import Path

from tuninglab import evaluation, models, params
from tuninglab.cli import run_stage
from tuninglab.files import load_arrays, write_json


def main(dataset: str) -> None:
    params.load()
    model, cfg = models.load(Path("models") / dataset)
    arrays, meta = load_arrays(Path("data/prepared") / dataset)
    metrics, predicted = evaluation.test_metrics(model, arrays["x_test"], arrays["y_test"], cfg)
    plots = Path("plots") / dataset
    plots.mkdir(parents=True, exist_ok=True)
    evaluation.confusion_rows(arrays["y_test"], predicted, meta["classes"]).to_csv(
        plots / "confusion.csv", index=False
    )
    write_json(Path("metrics") / dataset / "test.json", metrics)
    print(f"{dataset}: test accuracy {metrics['test_accuracy']}, macro F1 {metrics['macro_f1']}")


if __name__ == "__main__":
    run_stage(main, __doc__)
