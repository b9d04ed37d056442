"""The trainer learns, records divergence instead of crashing, and repeats itself exactly."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from tests.conftest import blobs, split_arrays
from tests.conftest import train_config as config
from tuninglab import schema
from tuninglab.lab import training
from tuninglab.lab.params import TRAIN_RULES

META = {"task": "classification", "classes": ["a", "b", "c"], "input_shape": [4], "preprocessing": {}}


def run(arrays=None, **changes):
    arrays = arrays if arrays is not None else split_arrays(*blobs())
    return training.train("tabular", arrays, META, config(**changes), torch.device("cpu"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_loss_falls_and_the_problem_is_learned(optimizer, loss):
    _, history, summary = run(optimizer=optimizer, loss=loss, lr=0.05 if optimizer == "sgd" else 0.01)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert summary["best_val_accuracy"] > 0.9
    assert not summary["diverged"]


@pytest.mark.parametrize(
    ("table", "param"),
    [(training.OPTIMIZERS, "optimizer"), (training.SCHEDULERS, "scheduler"), (training.LOSSES, "loss")],
    ids=["optimizer", "scheduler", "loss"],
)
def test_each_dispatch_table_has_exactly_the_allowed_choices(table, param):
    assert set(table) == set(TRAIN_RULES[param].choices)


@pytest.mark.parametrize("change", [{"optimizer": "adamw"}, {"scheduler": "linear"}, {"loss": "hinge"}])
def test_an_unknown_name_is_an_error_not_a_default(change):
    with pytest.raises(KeyError):
        run(epochs=1, **change)


def test_history_has_one_row_per_epoch_with_every_column():
    _, history, summary = run(epochs=4)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert all(tuple(row) == schema.HISTORY_COLUMNS for row in history)
    assert set(summary) | {"test_loss"} == {*schema.TRAIN_METRICS, *schema.DETAILS}
    assert summary["epochs_run"] == 4 and summary["n_params"] == 4 * 16 + 16 + 16 * 3 + 3


def test_divergence_in_the_first_epoch_is_recorded_with_no_trained_epoch():
    _, history, summary = run(optimizer="sgd", lr=1e6, momentum=0.0)
    assert summary["diverged"] is True
    assert summary["diverged_epoch"] == summary["epochs_run"] == 1 and history == []
    loss = summary["diverged_loss"]
    assert not math.isfinite(loss) or loss > training.DIVERGENCE_FACTOR
    # Nothing trained: no epoch is claimed as the best, and no validation loss for it.
    assert summary["best_epoch"] is None and summary["best_val_loss"] is None


def _linear_fit(arrays, cfg, on_epoch=None, model=None):
    """`training.fit` of a linear model on tensors of `arrays` (seeded by `cfg.seed`)."""
    torch.manual_seed(cfg.seed)
    model = model or torch.nn.Linear(arrays["x_train"].shape[1], 3)
    data = {k: torch.from_numpy(v) for k, v in arrays.items() if not k.endswith("_test")}
    return model, *training.fit(model, data, cfg, on_epoch=on_epoch)


def test_a_later_divergence_keeps_the_best_trained_epoch():
    arrays = split_arrays(*blobs())
    blow_up = []

    def scale_inputs(module, inputs):  # from epoch 2 on, training inputs are 1e20 times too large
        return (inputs[0] * 1e20,) if blow_up and module.training else None

    model = torch.nn.Linear(4, 3)
    model.register_forward_pre_hook(scale_inputs)
    model, history, summary = _linear_fit(arrays, config(), blow_up.append, model)
    assert summary["diverged_epoch"] == 2 and len(history) == 1
    assert summary["best_epoch"] == 1 and summary["best_val_loss"] == round(history[0]["val_loss"], 6)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_untrained_weights_are_never_kept():
    # Validation labels unrelated to the inputs: every trained epoch's confident guesses have a higher
    # validation loss than the untrained model's near-uniform ones. The trained epochs are still the result.
    arrays = split_arrays(*blobs())
    arrays["y_val"] = np.random.default_rng(0).permutation(arrays["y_val"])
    untrained = torch.nn.Linear(4, 3)
    torch.manual_seed(0)
    untrained.reset_parameters()
    untrained_loss, _ = training.score(
        untrained, torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["y_val"]), F.cross_entropy, 64
    )
    _, history, summary = _linear_fit(arrays, config(epochs=5, lr=0.1))
    assert min(row["val_loss"] for row in history) > untrained_loss
    assert summary["best_epoch"] == min(history, key=lambda row: row["val_loss"])["epoch"] >= 1


def test_select_by_val_metric_keeps_the_most_accurate_epoch():
    x, y = blobs(n_per_class=20, n_features=4, seed=3)
    y = y.copy()
    y[::3] = (y[::3] + 1) % 3  # label noise, so that loss and accuracy pick different epochs
    arrays = split_arrays(x, y)
    cfg = config(epochs=40, hidden=[64], lr=0.05)
    by_loss = run(arrays, **dataclasses.asdict(cfg))[2]["best_epoch"]
    model, history, summary = run(arrays, **{**dataclasses.asdict(cfg), "select_by": "val_metric"})
    best = max(history, key=lambda row: (row["val_accuracy"], -row["epoch"]))
    assert summary["best_epoch"] == best["epoch"] != by_loss
    _, accuracy = training.score(
        model, torch.from_numpy(arrays["x_val"]), torch.from_numpy(arrays["y_val"]), F.cross_entropy, 64
    )
    assert accuracy == best["val_accuracy"]


def test_same_seed_gives_identical_results_and_another_seed_does_not():
    def without_times(history):
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]

    _, first, s1 = run(dropout=0.3)
    _, again, s2 = run(dropout=0.3)
    _, other, _ = run(dropout=0.3, seed=1)
    assert without_times(first) == without_times(again)
    times = ("train_time_s", "cpu_time_s")
    assert {k: v for k, v in s1.items() if k not in times} == {k: v for k, v in s2.items() if k not in times}
    assert without_times(first) != without_times(other)


def test_early_stopping_restores_the_best_weights():
    # Few noisy training rows and a big model: validation loss turns up early.
    x, y = blobs(n_per_class=20, n_features=4, seed=3)
    y = y.copy()
    y[::4] = (y[::4] + 1) % 3  # label noise
    arrays = split_arrays(x, y)
    model, history, summary = run(arrays, epochs=200, patience=5, hidden=[256, 256], lr=0.01)
    assert summary["stopped_early"]
    assert summary["epochs_run"] == summary["best_epoch"] + 5 < 200
    best = min(history, key=lambda row: row["val_loss"])
    assert best["epoch"] == summary["best_epoch"]
    loss, _ = training.score(
        model,
        torch.from_numpy(arrays["x_val"]),
        torch.from_numpy(arrays["y_val"]),
        training.LOSSES["cross_entropy"],
        64,
    )
    assert loss == pytest.approx(best["val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("scheduler", "expected"),
    [
        ("none", [0.01] * 6),
        ("step", [0.01] * 5 + [0.005]),
    ],
)
def test_step_schedule_decays_learning_rate(scheduler, expected):
    _, history, _ = run(epochs=6, scheduler=scheduler)
    assert [row["lr"] for row in history] == pytest.approx(expected)


def test_cosine_schedule_anneals_towards_zero():
    _, history, _ = run(epochs=6, scheduler="cosine")
    rates = [row["lr"] for row in history]
    assert rates[0] == pytest.approx(0.01) and all(a > b for a, b in itertools.pairwise(rates))


def test_plateau_schedule_reacts_to_validation_loss():
    x, y = blobs(n_per_class=20, seed=3)
    y = y.copy()
    y[::3] = (y[::3] + 1) % 3
    _, history, _ = run(split_arrays(x, y), epochs=40, scheduler="plateau", patience=4, hidden=[128])
    rates = [row["lr"] for row in history]
    assert min(rates) < rates[0]


def test_l1_and_weight_decay_shrink_weights():
    def weight_norm(model):
        return sum(p.abs().sum().item() for p in model.parameters() if p.dim() > 1)

    plain, _, _ = run()
    assert weight_norm(run(l1=0.01)[0]) < 0.8 * weight_norm(plain)
    assert weight_norm(run(weight_decay=0.1)[0]) < weight_norm(plain)


def square_batch(channels: int = 1) -> torch.Tensor:
    """Four images of a bright square on black (-1)."""
    batch = torch.full((4, channels, 28, 28), -1.0)
    batch[:, :, 10:18, 6:14] = 1.0
    return batch


@pytest.mark.parametrize("augment_set", list(training.AUGMENTERS))
def test_image_augmentation_changes_each_image_of_a_batch_on_its_own(augment_set):
    batch = square_batch(channels=3)
    fill = torch.tensor([-1.0, -1.0, -1.0])
    augment = training.AUGMENTERS[augment_set](1.0, fill, torch.Generator().manual_seed(0))
    out = augment(batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert not torch.equal(out, batch)
    assert len({out[i].numpy().tobytes() for i in range(4)}) > 1  # drawn per image, not once per batch
    assert set(out.unique().tolist()) <= {-1.0, 1.0}  # nearest pixels and the fill, nothing blended
    again = training.AUGMENTERS[augment_set](1.0, fill, torch.Generator().manual_seed(0))(batch)
    assert torch.equal(out, again)  # the generator decides
    still = training.AUGMENTERS[augment_set](0.0, fill, torch.Generator().manual_seed(0))(batch)
    if augment_set == "affine":
        assert torch.equal(still, batch)
    else:
        assert all(torch.equal(s, b) or torch.equal(s, b.flip(2)) for s, b in zip(still, batch, strict=True))


def test_crop_flip_pads_with_each_channels_fill_and_moves_by_at_most_four_pixels():
    batch = torch.arange(64.0).view(1, 1, 8, 8).repeat(64, 3, 1, 1)
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = training.crop_flip_augmenter(1.0, fill, torch.Generator().manual_seed(0))(batch)
    for channel in range(3):
        assert set(out[:, channel].unique().tolist()) <= {*range(64), -1.0 - channel}
    corner = out[:, 0, 0, 0]
    assert (corner == -1).any() and (corner != -1).any()
    padded = torch.nn.functional.pad(batch[0, 0], (4, 4, 4, 4), value=-1.0)
    windows = {padded[r : r + 8, c : c + 8].numpy().tobytes() for r in range(9) for c in range(9)}
    windows |= {padded[r : r + 8, c : c + 8].flip(1).numpy().tobytes() for r in range(9) for c in range(9)}
    assert all(image[0].numpy().tobytes() in windows for image in out)  # a window, mirrored or not


def test_augment_set_table_has_exactly_the_allowed_choices():
    from tuninglab.lab import datasets

    assert set(training.AUGMENTERS) == set(datasets.model_rules(datasets.get("image"))["augment_set"].choices)


@pytest.mark.parametrize("augment_set", list(training.AUGMENTERS))
def test_training_with_augmentation_repeats_itself(augment_set):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3, 8, 8)).astype(np.float32)
    y = np.arange(60) % 3
    x[np.arange(60), y, :4, :4] += 3  # the class is the bright channel
    arrays = split_arrays(x, y)
    meta = {
        "task": "classification",
        "classes": ["r", "g", "b"],
        "input_shape": [3, 8, 8],
        "preprocessing": {},
    }
    settings = config(model="cnn", channels=[4], batch_norm=True, augment=True, augment_strength=1.0)
    settings = dataclasses.replace(settings, augment_set=augment_set, epochs=3)
    runs = [training.train("image", arrays, meta, settings, torch.device("cpu"))[1] for _ in range(2)]
    assert [r["train_loss"] for r in runs[0]] == [r["train_loss"] for r in runs[1]]


def test_amp_changes_nothing_on_the_cpu():
    """Mixed precision needs CUDA: on the CPU a run with train.amp is the run without it, bit for bit."""
    arrays = split_arrays(*blobs())
    model_off, history_off, _ = run(arrays, amp=False, epochs=4)
    model_on, history_on, _ = run(arrays, amp=True, epochs=4)
    times = ("epoch_time_s",)
    assert [{k: v for k, v in r.items() if k not in times} for r in history_on] == [
        {k: v for k, v in r.items() if k not in times} for r in history_off
    ]
    for on, off in zip(model_on.state_dict().values(), model_off.state_dict().values(), strict=True):
        assert torch.equal(on, off)
    assert not training.mixed_precision(config(amp=True), torch.device("cpu"))
    assert training.mixed_precision(config(amp=True), torch.device("cuda"))


def test_train_stage_says_amp_is_ignored_on_the_cpu(tmp_path, monkeypatch, capsys, default_params):
    from stages import train as stage
    from tuninglab.lab.files import save_arrays

    prepared = tmp_path / "data" / "prepared" / "tabular"
    prepared.mkdir(parents=True)
    save_arrays(prepared, split_arrays(*blobs()), {**META, "chance_accuracy": 0.333333})
    default_params["train"].update(amp=True, epochs=1, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    monkeypatch.chdir(tmp_path)
    stage.main("tabular", prepared, tmp_path / "models" / "tabular")
    assert (
        "tabular: train.amp is ignored on the CPU (mixed precision needs CUDA); training in float32"
        in capsys.readouterr().out
    )


def test_cuda_refused_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"train\.device: cuda is not allowed here"):
        training.resolve_device("cuda")
    assert training.resolve_device("auto").type == "cpu"


def test_evaluation_on_trained_model(tmp_path):
    from tuninglab.lab import evaluation

    arrays = split_arrays(*blobs())
    model, _, _ = run(arrays)
    metrics, predicted = evaluation.test_metrics(model, arrays["x_test"], arrays["y_test"], config(), 0.4)
    assert set(metrics) == {*schema.TEST_METRICS, "test_loss"} and metrics["chance_accuracy"] == 0.4
    assert metrics["test_accuracy"] == pytest.approx((predicted == arrays["y_test"]).mean())
    assert metrics["test_accuracy"] > 0.9 and 0 < metrics["macro_f1"] <= 1 and metrics["test_loss"] > 0
    rows = evaluation.confusion_rows(arrays["y_test"], predicted, META["classes"])
    assert list(rows) == ["actual", "predicted"] and len(rows["actual"]) == len(predicted)
    assert set(rows["actual"]) <= set(META["classes"])
    assert [META["classes"].index(name) for name in rows["actual"]] == arrays["y_test"].tolist()


def test_thread_count_comes_from_the_param(monkeypatch):
    before = torch.get_num_threads()
    try:
        assert training.configure_threads(1) == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert 1 <= training.configure_threads("auto") <= training.MAX_THREADS
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert training.configure_threads("auto") == 1
        _, _, summary = run(threads=1)
        assert summary["used_threads"] == 1 and summary["cpu_time_s"] > 0
    finally:
        torch.set_num_threads(before)


def test_train_stage_says_when_the_batch_is_larger_than_the_training_split(
    tmp_path, monkeypatch, capsys, default_params
):
    from stages import train as stage
    from tuninglab.lab.files import save_arrays

    arrays = split_arrays(*blobs())
    prepared = tmp_path / "data" / "prepared" / "tabular"
    prepared.mkdir(parents=True)
    save_arrays(prepared, arrays, {**META, "chance_accuracy": 0.333333})
    default_params["train"].update(batch_size=1_000_000_000, epochs=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    monkeypatch.chdir(tmp_path)
    stage.main("tabular", prepared, tmp_path / "models" / "tabular")
    rows = len(arrays["y_train"])
    assert (
        f"tabular: train.batch_size 1000000000 is larger than the training split ({rows} rows); "
        f"each step uses all {rows} rows" in capsys.readouterr().out
    )
    assert (tmp_path / "metrics" / "tabular" / "test.json").is_file()


def test_a_run_that_diverges_in_its_first_epoch_claims_no_test_metric(tmp_path, monkeypatch, default_params):
    from stages import train as stage
    from tuninglab.lab.files import read_json, save_arrays

    prepared = tmp_path / "data" / "prepared" / "tabular"
    prepared.mkdir(parents=True)
    save_arrays(prepared, split_arrays(*blobs()), {**META, "chance_accuracy": 0.333333})
    default_params["train"].update(optimizer="sgd", lr=1e9, momentum=0.0, epochs=3, repeats=1)
    default_params["tabular"]["train"].pop("repeats", None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    monkeypatch.chdir(tmp_path)
    stage.main("tabular", prepared, tmp_path / "models" / "tabular")
    test = read_json(schema.metrics_path("tabular", "test"))["tabular"]
    assert test == {
        "test_accuracy": None,
        "test_accuracy_ci95": None,
        "macro_f1": None,
        "macro_f1_ci95": None,
        "balanced_accuracy": None,
        "balanced_accuracy_ci95": None,
        "chance_accuracy": 0.333333,
        "repeats": 1,
    }
    trained = read_json(schema.metrics_path("tabular", "train"))["tabular"]
    assert trained["diverged"] is True and trained["best_epoch"] is None and trained["cpu_capability"]
    assert schema.plots_path("tabular", "confusion").read_text().strip() == "actual,predicted"
    assert read_json(schema.metrics_path("tabular", "details"))["test_loss"] is None


def test_repeats_write_the_mean_its_interval_and_every_seed(tmp_path, monkeypatch, default_params):
    """Three repeats: seeds 5, 6, 7, each the run of its seed alone; test.json: their mean ± t-interval."""
    import scipy.stats

    from stages import train as stage
    from tuninglab.lab.files import read_json, save_arrays

    prepared = tmp_path / "data" / "prepared" / "tabular"
    prepared.mkdir(parents=True)
    save_arrays(prepared, split_arrays(*blobs()), {**META, "chance_accuracy": 0.333333})
    default_params["train"].update(seed=5, epochs=3, repeats=3, lr=0.05, hidden=[4])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    monkeypatch.chdir(tmp_path)
    stage.main("tabular", prepared, tmp_path / "models" / "tabular")
    test = read_json(schema.metrics_path("tabular", "test"))["tabular"]
    per_repeat = read_json(schema.metrics_path("tabular", "details"))[schema.PER_REPEAT]
    assert [r["seed"] for r in per_repeat] == [5, 6, 7] and test["repeats"] == 3
    values = [r["macro_f1"] for r in per_repeat]
    assert test["macro_f1"] == pytest.approx(np.mean(values), abs=1e-6)
    half = scipy.stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert test["macro_f1_ci95"] == pytest.approx(half, abs=1e-6)
    # repeat 1 is the run of seed 6 on its own
    default_params["train"].update(seed=6, repeats=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    stage.main("tabular", prepared, tmp_path / "models" / "tabular")
    alone = read_json(schema.metrics_path("tabular", "details"))[schema.PER_REPEAT][0]
    assert {k: v for k, v in alone.items() if k not in ("repeat", "train_time_s")} == {
        k: v for k, v in per_repeat[1].items() if k not in ("repeat", "train_time_s")
    }
