"""The training path stays light: its metrics without scikit-learn, its CSVs without pandas, the same values.

The train stage computes its test metrics with numpy (`tuninglab.lab.metrics`) and writes
its plots with the standard library (`files.write_table`); these tests check
both against the libraries they replace, on random data, so that a change in
either shows here.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from tests.conftest import ROOT
from tests.conftest import train_config as training_config
from tuninglab.lab import metrics
from tuninglab.lab.files import table_text, write_table


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(6))
def test_the_classification_metrics_are_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    actual = rng.integers(0, n_classes, size=int(rng.integers(5, 300)))
    # mostly right, some classes never predicted or never present: the macro average must skip neither wrongly
    predicted = np.where(rng.random(len(actual)) < 0.6, actual, rng.integers(0, n_classes, len(actual)))
    predicted[predicted == n_classes - 1] = 0
    actual[actual == 1] = 0 if seed % 2 else 1
    assert metrics.accuracy(actual, predicted) == sk.accuracy_score(actual, predicted)
    assert metrics.macro_f1(actual, predicted, n_classes) == pytest.approx(
        sk.f1_score(actual, predicted, average="macro", zero_division=0.0), rel=1e-12
    )
    assert metrics.balanced_accuracy(actual, predicted, n_classes) == pytest.approx(
        sk.balanced_accuracy_score(actual, predicted), rel=1e-12
    )
    np.testing.assert_array_equal(
        metrics.confusion_matrix(actual, predicted, n_classes),
        sk.confusion_matrix(actual, predicted, labels=range(n_classes)),
    )


def test_a_wrong_macro_f1_would_show():
    """Averaging over every class, or over the actual classes only, is not scikit-learn's macro F1."""
    actual, predicted = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 1])
    assert metrics.macro_f1(actual, predicted, 4) == pytest.approx(
        sk.f1_score(actual, predicted, average="macro")
    )
    assert metrics.macro_f1(actual, predicted, 4) == pytest.approx(
        (2 / 3 + 2 / 3 + 0) / 3
    )  # class 3 absent: not counted


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_weighs_every_actual_class_alike():
    """A class never present is not averaged; always predicting the majority class scores 1 / classes."""
    actual, predicted = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 3])
    assert metrics.balanced_accuracy(actual, predicted, 4) == pytest.approx((1 + 0.5 + 0) / 3)
    assert metrics.balanced_accuracy(actual, predicted, 4) == pytest.approx(
        sk.balanced_accuracy_score(actual, predicted)
    )
    assert metrics.accuracy(actual, predicted) == 0.7
    majority = np.zeros_like(actual)
    assert metrics.balanced_accuracy(actual, majority, 4) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_the_regression_metrics_are_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    actual = rng.normal(12, 0.4, size=int(rng.integers(3, 500)))
    predicted = actual + rng.normal(0.1, 0.3, len(actual))
    assert metrics.r2(actual, predicted) == pytest.approx(sk.r2_score(actual, predicted), rel=1e-12)
    assert metrics.rmse(actual, predicted) == pytest.approx(
        math.sqrt(sk.mean_squared_error(actual, predicted)), rel=1e-12
    )
    assert metrics.mae(actual, predicted) == pytest.approx(
        sk.mean_absolute_error(actual, predicted), rel=1e-12
    )


def frame_csv(columns: dict) -> str:
    return pd.DataFrame(columns).to_csv(index=False)


@pytest.mark.parametrize("seed", range(3))
def test_a_table_is_written_as_pandas_writes_it(seed, tmp_path):
    rng = np.random.default_rng(seed)
    n = 40
    floats = rng.normal(0, 10.0 ** rng.integers(-8, 20, n), n)
    floats[::7] = np.nan
    floats[1] = np.inf
    columns = {
        "epoch": np.arange(1, n + 1),
        "value": floats,
        "round": np.round(floats),
        "empty": np.full(n, np.nan),
        "name": np.array(["plain", "with,comma", 'with "quote"', "", "zero"] * 8)[:n],
    }
    assert table_text(columns) == frame_csv(columns)
    write_table(tmp_path / "t.csv", columns)
    assert (tmp_path / "t.csv").read_text() == frame_csv(columns)
    lone = {"std": np.array([np.nan, 1.5, np.nan])}  # a row holding one empty field must be quoted
    assert table_text(lone) == frame_csv(lone)
    history = {"epoch": [1, 2], "lr": [0.1, 0.05], "loss": [1.0, 0.25]}
    assert table_text(history) == frame_csv(history)
    assert table_text({"epoch": [], "loss": []}) == "epoch,loss\n"


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="columns of different lengths"):
        table_text({"a": [1, 2], "b": [1]})


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("stages.train", ["pandas", "sklearn", "scipy.stats", "torchvision", "matplotlib"]),
        ("stages.check_params", ["torch", "pandas", "sklearn", "scipy", "torchvision"]),
    ],
)
def test_a_stage_imports_only_what_it_uses(module, absent):
    code = f"import sys; import {module}; print(sorted(set({absent!r}) & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
        ("adam", {"lr": 0.01, "weight_decay": 0.001}),
        ("rmsprop", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.0}),
    ],
)
def test_the_lab_optimizers_step_as_torchs_own(name, settings):
    """The optimizers that skip torch._dynamo's import compute torch's steps bit for bit."""
    import copy

    import torch

    from tuninglab.lab import training

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    lab_class = type(training.OPTIMIZERS[name](model.parameters(), training_config(**settings)))
    trained = []
    for optimizer_class in (lab_class, lab_class.__mro__[1]):
        copied = copy.deepcopy(model)
        optimizer = optimizer_class(copied.parameters(), **settings)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        for start in range(0, 64, 8):
            loss = torch.nn.functional.cross_entropy(copied(x[start : start + 8]), y[start : start + 8])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        trained.append((copied.state_dict(), optimizer.state_dict()))
    assert lab_class.__mro__[1] is getattr(torch.optim, lab_class.__name__)
    (lab_weights, lab_state), (torch_weights, torch_state) = trained
    assert all(torch.equal(lab_weights[k], torch_weights[k]) for k in torch_weights)
    assert lab_state["param_groups"] == torch_state["param_groups"]


def test_training_imports_no_torch_dynamo():
    """torch.optim imports torch._dynamo (seconds) at the first step; the lab's training does not."""
    code = (
        "import sys; from tests.conftest import blobs, split_arrays, train_config; "
        "from tuninglab.lab import training; import torch; "
        "arrays = split_arrays(*blobs()); "
        "meta = {'task': 'classification', 'classes': ['a', 'b', 'c'], "
        "'input_shape': [arrays['x_train'].shape[1]]}; "
        "cfg = train_config(epochs=2, scheduler='plateau'); "
        "training.train('tabular', arrays, meta, cfg, torch.device('cpu')); "
        "print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
