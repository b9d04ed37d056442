"""Every architecture option builds and maps a batch to one logit per class."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.conftest import train_config
from tuninglab.lab import datasets, models
from tuninglab.lab.params import TRAIN_RULES, TrainConfig


def cfg(**changes) -> TrainConfig:
    family_settings = {"channels": [4, 8], "batch_norm": True, "embedding_dim": 8, "pooling": "sum"}
    return train_config(**{"hidden": [16], "model": "mlp", **family_settings, **changes})


def build(dataset: str, meta: dict, settings: TrainConfig):
    """The model the trainer builds for `dataset`: the family its spec and `settings.model` pick."""
    return models.build(datasets.family(datasets.get(dataset), settings.model), meta, settings)


TABULAR = {"task": "classification", "classes": ["a", "b", "c"], "input_shape": [4], "preprocessing": {}}
IMAGE = {
    "task": "classification",
    "classes": [str(i) for i in range(10)],
    "input_shape": [1, 28, 28],
    "preprocessing": {},
}
TEXT = {
    "task": "classification",
    "classes": ["fresh", "rotten"],
    "input_shape": [2, 12],
    "preprocessing": {"vocab_size": 50},
}


@pytest.mark.parametrize("hidden", [[], [8], [32, 16, 8]])
@pytest.mark.parametrize("activation", list(models.ACTIVATIONS))
def test_mlp_depth_width_and_activation(hidden, activation):
    model = build("tabular", TABULAR, cfg(hidden=hidden, activation=activation))
    assert model(torch.randn(5, 4)).shape == (5, 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, 3]
    n_activations = sum(isinstance(m, models.ACTIVATIONS[activation]) for m in model.modules())
    assert n_activations == len(hidden)


def test_activation_table_has_exactly_the_allowed_choices():
    assert set(models.ACTIVATIONS) == set(TRAIN_RULES["activation"].choices)


def test_family_table_builds_exactly_the_registered_families():
    assert set(models.BUILDERS) == {f for d in datasets.dataset_names() for f in datasets.get(d).families}


def test_an_unknown_family_or_activation_is_an_error_not_a_default():
    with pytest.raises(KeyError):
        models.build("transformer", TABULAR, cfg())
    with pytest.raises(KeyError):
        models.build("mlp", TABULAR, cfg(activation="gelu"))
    with pytest.raises(KeyError):
        datasets.family(datasets.get("image"), "transformer")


def test_dropout_layers_only_when_asked():
    with_dropout = build("tabular", TABULAR, cfg(hidden=[8, 8], dropout=0.3))
    without = build("tabular", TABULAR, cfg(hidden=[8, 8], dropout=0.0))
    assert [m.p for m in with_dropout.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


@pytest.mark.parametrize("channels", [[4], [4, 8], [4, 8, 8, 8]])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_cnn_channels_and_batch_norm(channels, batch_norm):
    model = build("image", IMAGE, cfg(model="cnn", channels=channels, batch_norm=batch_norm))
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs == channels
    assert len(norms) == (len(channels) if batch_norm else 0)


def test_image_mlp_flattens_pixels():
    model = build("image", IMAGE, cfg(model="mlp", hidden=[32]))
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == 784


def bags(*rows: list[tuple[int, float]], length: int) -> torch.Tensor:
    """Weighted bags as the prepare stage stores them: ids then weights, padded with id 0."""
    out = torch.zeros(len(rows), 2, length)
    for row, grams in enumerate(rows):
        for position, (gram, weight) in enumerate(grams):
            out[row, 0, position], out[row, 1, position] = gram, weight
    return out


@pytest.mark.parametrize("pooling", ["mean", "max", "sum"])
def test_text_embedding_bag_pooling_ignores_padding(pooling):
    model = build("text", TEXT, cfg(pooling=pooling, embedding_dim=6, hidden=[]))
    model.eval()
    grams = [(5, 0.6), (7, 0.8)]
    assert model(bags(grams, grams, length=4)).shape == (2, 2)
    torch.testing.assert_close(model(bags(grams, length=4)), model(bags(grams, length=8)))
    assert model[0].embedding.embedding_dim == 6 and model[0].pooling == pooling


def test_text_sum_pooling_is_the_weighted_sum_of_embeddings():
    model = build("text", TEXT, cfg(pooling="sum", embedding_dim=4, hidden=[]))
    table = model[0].embedding.weight
    pooled = model[0](bags([(5, 0.6), (7, 0.8)], [], length=3))
    torch.testing.assert_close(pooled[0], 0.6 * table[5] + 0.8 * table[7])
    torch.testing.assert_close(pooled[1], torch.zeros(4))  # an empty bag
    assert table.abs().max() <= 1 / 4 and not table[0].any()  # started small; padding zero


COLOUR = {
    "task": "classification",
    "classes": [str(i) for i in range(10)],
    "input_shape": [3, 32, 32],
    "preprocessing": {},
}


@pytest.mark.parametrize("shape", [[1, 28, 28], [3, 32, 32], [1, 16, 16]])
def test_the_cnn_and_resnet_take_any_channel_count_and_image_size(shape):
    meta = {**IMAGE, "input_shape": shape}
    for settings in (cfg(model="cnn", channels=[4, 8]), cfg(model="resnet", resnet_width=4, resnet_depth=18)):
        model = build("image", meta, settings)
        assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize(("depth", "blocks"), [(18, 8), (34, 16)])
def test_resnet_depth_and_width(depth, blocks):
    from torchvision.models.resnet import BasicBlock

    model = build("image", COLOUR, cfg(model="resnet", resnet_width=8, resnet_depth=depth))
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == blocks
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert (convs[0].in_channels, convs[0].out_channels, convs[0].kernel_size, convs[0].stride) == (
        3,
        8,
        (3, 3),
        (1, 1),
    )
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model[-1].in_features == 64 and model[-1].out_features == 10


def test_resnet_18_is_torchvisions_with_the_small_image_stem():
    """Width 64, depth 18: torchvision's resnet18 with a 3x3 stride-1 first convolution and no max pool."""
    from torchvision.models import resnet18

    reference = resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    ours = build("image", COLOUR, cfg(model="resnet", resnet_width=64, resnet_depth=18))
    shapes = [tuple(t.shape) for t in ours.state_dict().values()]
    assert shapes == [tuple(t.shape) for t in reference.state_dict().values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), reference.state_dict().values(), strict=True)))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


def test_save_and_load_give_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    settings = train_config(model="cnn", channels=[4], batch_norm=True, hidden=[8])
    model = build("image", IMAGE, settings).eval()
    models.save(tmp_path, model, "image", settings, IMAGE)
    loaded, loaded_cfg = models.load(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), loaded.eval()(x))
    assert loaded_cfg == settings
    spec = json.loads((tmp_path / "model.json").read_text())
    assert spec["family"] == "cnn" and spec["train"]["channels"] == [4]
    assert "embedding_dim" not in spec["train"]  # another family's setting, unset
