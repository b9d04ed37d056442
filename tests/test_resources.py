"""Settings this machine cannot run are refused before any stage runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tuninglab.lab import families, models, params, resources
from tuninglab.lab.kinds import image
from tuninglab.lab.params import ParamError


def test_defaults_fit_in_a_small_machine(default_params):
    resources.check_memory(default_params, available=2 * 1024**3)


@pytest.mark.parametrize(
    ("group", "key", "value", "named"),
    [
        ("data", "max_len", 100_000_000, "text.data.max_len=100000000"),
        ("train", "embedding_dim", 10_000_000, "text.train.embedding_dim"),
    ],
)
def test_huge_text_settings_are_refused_with_the_estimate(default_params, group, key, value, named):
    default_params["text"][group][key] = value
    with pytest.raises(ParamError) as refused:
        resources.check_memory(default_params, available=24 * 1024**3)
    message = str(refused.value)
    assert message.startswith("text: these settings need about ") and "TiB" in message
    assert "this machine has 24.0 GiB" in message and f"lower {named}" in message


def test_huge_hidden_layer_is_refused(default_params):
    default_params["train"]["hidden"] = [1_000_000_000]
    with pytest.raises(ParamError, match=r"lower train\.hidden"):
        resources.check_memory(default_params, available=24 * 1024**3)


def test_huge_cnn_is_refused_naming_its_channels(default_params):
    default_params["image"]["train"]["channels"] = [100_000, 100_000]
    with pytest.raises(
        ParamError, match=r"^image: .* lower image\.train\.channels=\[100000, 100000\], train\.hidden"
    ):
        resources.check_memory(default_params, available=24 * 1024**3)
    default_params["image"]["train"]["model"] = "mlp"  # the channels are not used
    resources.check_memory(default_params, available=24 * 1024**3)


@pytest.mark.parametrize("source", sorted(image.IMAGE_SIZES))
def test_the_cnn_estimate_counts_the_weights_of_the_model_for_each_image_source(default_params, source):
    """Grey or colour, 16 or 32 pixels: the estimate sizes the very model the trainer builds."""
    default_params["image"]["data"]["source"] = source
    estimate, _ = resources.memory_estimate(default_params, "image")["model"]
    meta = {
        "task": "classification",
        "classes": list("0123456789"),
        "input_shape": list(image.image_shape({"source": source})),
    }
    model = models.build("cnn", meta, params.train_config(default_params, "image"))
    weights = sum(p.numel() for p in model.parameters())
    assert estimate == weights * resources.BYTES_PER_WEIGHT * resources.COPIES_OF_WEIGHTS


@pytest.mark.parametrize(
    ("source", "width", "depth"), [("cifar10", 64, 18), ("usps", 16, 34), ("mnist", 8, 18)]
)
def test_the_resnet_estimate_counts_the_weights_of_the_model(default_params, source, width, depth):
    default_params["image"]["data"]["source"] = source
    default_params["image"]["train"].update(model="resnet", resnet_width=width, resnet_depth=depth)
    terms = resources.memory_estimate(default_params, "image")
    meta = {
        "task": "classification",
        "classes": list("0123456789"),
        "input_shape": list(image.image_shape({"source": source})),
    }
    model = models.build("resnet", meta, params.train_config(default_params, "image"))
    weights = sum(p.numel() for p in model.parameters())
    assert terms["model"][0] == weights * resources.BYTES_PER_WEIGHT * resources.COPIES_OF_WEIGHTS
    assert f"image.train.resnet_width={width}, image.train.resnet_depth={depth}" in terms["model"][1]


def test_every_model_family_has_a_memory_estimate():
    assert set(families.FAMILIES) == set(models.BUILDERS)


def test_cuda_without_a_gpu_is_refused(default_params, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    default_params["image"]["train"]["device"] = "cuda"
    with pytest.raises(ParamError, match=r"^image.train.device: cuda is not allowed here"):
        resources.check_device(default_params)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    resources.check_device(default_params)


def test_check_params_stage_refuses_before_writing_its_marker(tmp_path: Path, default_params):
    default_params["text"]["data"]["max_len"] = 1_000_000_000
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_params))
    result = subprocess.run(
        [sys.executable, "-m", "stages.check_params", "data/params.ok"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 2
    assert (
        result.stderr.startswith("error: text: these settings need about") and result.stderr.count("\n") == 1
    )
    assert not (tmp_path / "data").exists()


def test_value_range_knows_each_numeric_params_bounds():
    assert params.value_range("train.weight_decay") == (0.0, 1.0)
    assert params.value_range("train.lr") == (0.0, None)
    assert params.value_range("text.train.dropout") == (0.0, 1.0)
    assert params.value_range("image.train.augment_strength") == (0.0, 3.0)
    assert params.value_range("train.optimizer") is None
    assert params.value_range("no.such.key") is None


def test_threads_is_a_param(default_params):
    assert default_params["train"]["threads"] == 1
    for bad in (0, "all", 1.5):
        default_params["train"]["threads"] = bad
        with pytest.raises(ParamError, match=r"train\.threads: .* expected auto or an integer >= 1"):
            params.validate(default_params)
