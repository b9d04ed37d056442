"""Every architecture option builds and maps a batch to one logit per class."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuninglab.lab import models
from tuninglab.lab.params import TRAIN_RULES


def cfg(**changes):
    base = {
        "hidden": [16],
        "activation": "relu",
        "dropout": 0.0,
        "model": "mlp",
        "channels": [4, 8],
        "batch_norm": True,
        "embedding_dim": 8,
        "pooling": "mean",
    }
    return {**base, **changes}


TABULAR = {"classes": ["a", "b", "c"], "input_shape": [4], "preprocessing": {}}
IMAGE = {"classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28], "preprocessing": {}}
TEXT = {"classes": ["fresh", "rotten"], "input_shape": [12], "preprocessing": {"vocab_size": 50}}


@pytest.mark.parametrize("hidden", [[], [8], [32, 16, 8]])
@pytest.mark.parametrize("activation", list(models.ACTIVATIONS))
def test_mlp_depth_width_and_activation(hidden, activation):
    model = models.build("tabular", TABULAR, cfg(hidden=hidden, activation=activation))
    assert model(torch.randn(5, 4)).shape == (5, 3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [*hidden, 3]
    n_activations = sum(isinstance(m, models.ACTIVATIONS[activation]) for m in model.modules())
    assert n_activations == len(hidden)


def test_activation_choices_match_the_allowed_params():
    assert all(TRAIN_RULES["activation"].check(name) for name in models.ACTIVATIONS)


def test_dropout_layers_only_when_asked():
    with_dropout = models.build("tabular", TABULAR, cfg(hidden=[8, 8], dropout=0.3))
    without = models.build("tabular", TABULAR, cfg(hidden=[8, 8], dropout=0.0))
    assert [m.p for m in with_dropout.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


@pytest.mark.parametrize("channels", [[4], [4, 8], [4, 8, 8, 8]])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_cnn_channels_and_batch_norm(channels, batch_norm):
    model = models.build("image", IMAGE, cfg(model="cnn", channels=channels, batch_norm=batch_norm))
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs == channels
    assert len(norms) == (len(channels) if batch_norm else 0)


def test_image_mlp_flattens_pixels():
    model = models.build("image", IMAGE, cfg(model="mlp", hidden=[32]))
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    assert next(m for m in model.modules() if isinstance(m, nn.Linear)).in_features == 784


@pytest.mark.parametrize("pooling", ["mean", "max", "sum"])
def test_text_embedding_bag_pooling_ignores_padding(pooling):
    model = models.build("text", TEXT, cfg(pooling=pooling, embedding_dim=6, hidden=[]))
    model.eval()
    tokens = torch.tensor([[5, 7, 0, 0], [5, 7, 0, 0]])
    padded_more = torch.tensor([[5, 7, 0, 0, 0, 0, 0, 0]])
    assert model(tokens).shape == (2, 2)
    torch.testing.assert_close(model(tokens)[:1], model(padded_more))
    assert model[0].embedding_dim == 6 and model[0].mode == pooling


def test_save_and_load_give_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    settings = cfg(model="cnn", channels=[4], hidden=[8])
    model = models.build("image", IMAGE, settings).eval()
    models.save(tmp_path, model, "image", settings, IMAGE)
    loaded, loaded_cfg = models.load(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(model(x), loaded.eval()(x))
    assert loaded_cfg == settings
