"""The lab's model families, built from plain `nn.Sequential` blocks.

- mlp: fully connected layers (`hidden` widths) for tabular rows or flattened images.
- cnn: 3x3 convolution blocks (`channels`, optional batch norm, 2x2 max pool)
  followed by the same fully connected head.
- embedding_bag: a text's weighted bag of n-grams (ids and weights, as
  `kinds.text.pack_bags` stores them): their embeddings (started small, as
  fastText's) pooled with those weights (sum, mean or max), then the fully
  connected head. With a linear head and sum pooling it is a low-rank linear
  model of the weighted bag: a fastText-style classifier.
- resnet: torchvision's ResNet-18 or -34 for small images (a 3x3 stride-1
  stem and no max pool, as for 32x32 CIFAR images), `resnet_width` base
  channels; its head is one linear layer (`hidden`, `dropout` and
  `activation` do not apply: its blocks use ReLU).

Every family ends in a linear layer with one logit per class or, for a
numeric target (meta.json's `task` is a regression), the outputs its loss
reads: the mean, and with gaussian_nll also the log-variance (`OUTPUTS`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuninglab import tasks
from tuninglab.lab import datasets
from tuninglab.lab.families import RESNET_BLOCKS
from tuninglab.lab.files import read_json, write_json
from tuninglab.lab.params import TrainConfig

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


def mlp(
    in_features: int, hidden: list[int], n_classes: int, activation: str, dropout: float
) -> nn.Sequential:
    """Fully connected layers of widths `hidden`, then a linear layer to the class logits."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = width
    layers.append(nn.Linear(in_features, n_classes))
    return nn.Sequential(*layers)


def cnn(input_shape: list[int], channels: list[int], batch_norm: bool, head: dict[str, Any]) -> nn.Sequential:
    """Conv(3x3) [-> BatchNorm] -> activation -> MaxPool(2) per entry of `channels`, then an mlp head."""
    in_channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers += [ACTIVATIONS[head["activation"]](), nn.MaxPool2d(2)]
        in_channels, height, width = out_channels, height // 2, width // 2
    return nn.Sequential(*layers, nn.Flatten(), mlp(in_channels * height * width, **head))


def resnet(input_shape: list[int], n_classes: int, width: int, depth: int) -> nn.Sequential:
    """torchvision's ResNet (basic blocks) for small images, with `width` base channels.

    The stem is a 3x3 convolution of stride 1 with batch norm and ReLU, and no
    max pool, so a 32x32 image keeps its resolution into the first stage.
    Four stages of `families.RESNET_BLOCKS[depth]` blocks follow, of 1x, 2x,
    4x and 8x `width` channels, each after the first halving the resolution;
    then global average pooling and a linear layer. With width 64 and depth 18 this is
    `torchvision.models.resnet18` with its stem changed that way, initialized
    as torchvision initializes it.
    """
    from torchvision.models.resnet import BasicBlock, conv1x1  # imported here: it adds seconds to start-up

    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], width, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    in_channels = width
    for stage, blocks in enumerate(RESNET_BLOCKS[depth]):
        channels, stride = width * 2**stage, 1 if stage == 0 else 2
        downsample = None
        if stride != 1 or in_channels != channels:
            downsample = nn.Sequential(conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels))
        stage_blocks = [BasicBlock(in_channels, channels, stride, downsample)]
        stage_blocks += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
        layers.append(nn.Sequential(*stage_blocks))
        in_channels = channels
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, n_classes))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


# Per regression loss (`train.loss`): the outputs per row, the predicted mean first.
REGRESSION_OUTPUTS = {"mse": 1, "gaussian_nll": 2}


# By the task meta.json names: (meta, settings) -> the width of the last layer.
OUTPUTS: dict[str, Callable[[dict[str, Any], TrainConfig], int]] = {
    tasks.CLASSIFICATION.name: lambda meta, cfg: len(meta["classes"]),
    tasks.REGRESSION.name: lambda meta, cfg: REGRESSION_OUTPUTS[cfg.loss],
}


def n_outputs(meta: dict[str, Any], cfg: TrainConfig) -> int:
    """Width of the last layer: one logit per class, or the outputs the regression loss reads."""
    return OUTPUTS[meta["task"]](meta, cfg)


def _head(meta: dict[str, Any], cfg: TrainConfig) -> dict[str, Any]:
    """The fully connected head's arguments of `mlp`, less its input width."""
    return {
        "hidden": cfg.hidden,
        "n_classes": n_outputs(meta, cfg),
        "activation": cfg.activation,
        "dropout": cfg.dropout,
    }


def _flat_mlp(meta: dict[str, Any], cfg: TrainConfig) -> nn.Sequential:
    """mlp: the input flattened (a tabular row, an image's pixels), then the fully connected layers."""
    return nn.Sequential(nn.Flatten(), mlp(math.prod(meta["input_shape"]), **_head(meta, cfg)))


def _cnn(meta: dict[str, Any], cfg: TrainConfig) -> nn.Sequential:
    """cnn: `channels` convolution blocks on (C, H, W) inputs, then the fully connected head."""
    return cnn(meta["input_shape"], cfg.channels, cfg.batch_norm, _head(meta, cfg))


class WeightedBag(nn.Module):
    """Pools the embeddings of each row's n-grams, each scaled by its weight; id 0 pads.

    Input: float (rows, 2, max_len), the ids then their weights. `sum` is the
    weighted sum (the bag's weight vector times the embedding matrix), `mean`
    that sum divided by the row's n-gram count, `max` the largest weighted
    value per dimension; a row without n-grams pools to zeros.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, pooling: str) -> None:
        super().__init__()
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        # Started small, as fastText's: rare n-grams get few updates and add little noise to a bag.
        nn.init.uniform_(self.embedding.weight, -1 / embedding_dim, 1 / embedding_dim)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        """The pooled (rows, embedding_dim) vectors."""
        ids, weights = bags[:, 0].long(), bags[:, 1]
        if self.pooling == "max":
            vectors = self.embedding(ids) * weights.unsqueeze(2)
            vectors = vectors.masked_fill((ids == 0).unsqueeze(2), -math.inf).amax(dim=1)
            return vectors.masked_fill(vectors == -math.inf, 0.0)
        if self.pooling == "mean":
            weights = weights / (ids != 0).sum(dim=1, keepdim=True).clamp(min=1)
        return F.embedding_bag(
            ids, self.embedding.weight, per_sample_weights=weights, mode="sum", padding_idx=0
        )


def _embedding_bag(meta: dict[str, Any], cfg: TrainConfig) -> nn.Sequential:
    """embedding_bag: a weighted bag of n-gram embeddings pooled per row, then the fully connected head."""
    bag = WeightedBag(meta["preprocessing"]["vocab_size"], cfg.embedding_dim, cfg.pooling)
    return nn.Sequential(bag, mlp(cfg.embedding_dim, **_head(meta, cfg)))


def _resnet(meta: dict[str, Any], cfg: TrainConfig) -> nn.Sequential:
    """resnet: `resnet_depth` layers of `resnet_width` base channels on (C, H, W) inputs."""
    return resnet(meta["input_shape"], len(meta["classes"]), cfg.resnet_width, cfg.resnet_depth)


# The torch side of each family (`families.FAMILIES`), by its name: each builds from the prepared data's
# metadata and the settings.
BUILDERS: dict[str, Callable[[dict[str, Any], TrainConfig], nn.Sequential]] = {
    "mlp": _flat_mlp,
    "cnn": _cnn,
    "embedding_bag": _embedding_bag,
    "resnet": _resnet,
}


def build(family: str, meta: dict[str, Any], cfg: TrainConfig) -> nn.Sequential:
    """The model of one family, from the prepared data's metadata and the training settings."""
    return BUILDERS[family](meta, cfg)


# The meta.json entries model.json keeps: what `build` reads.
MODEL_META = ("task", "classes", "target", "input_shape", "preprocessing")


def save(
    model_dir: Path,
    model: nn.Module,
    dataset: str,
    cfg: TrainConfig,
    meta: dict[str, Any],
    kind: str | None = None,
) -> None:
    """Write the state dict and everything needed to rebuild the model (`model.json`).

    `dataset` is the params.yaml group, `kind` its data type when the group is
    named otherwise (`params.kind_of`). The settings of the other model
    families (None) are left out.
    """
    torch.save(model.state_dict(), model_dir / "model.pt")
    kind = dataset if kind is None else kind
    spec = {
        "dataset": dataset,
        "kind": kind,
        "family": datasets.family(datasets.get(kind), cfg.model),
        "train": {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None},
        "data": {k: meta[k] for k in MODEL_META if k in meta},
    }
    write_json(model_dir / "model.json", spec)


def load(model_dir: Path) -> tuple[nn.Module, TrainConfig]:
    """Rebuild a saved model with its weights; also returns the settings that trained it."""
    spec = read_json(model_dir / "model.json")
    cfg = TrainConfig(**spec["train"])
    model = build(spec["family"], spec["data"], cfg)
    model.load_state_dict(torch.load(model_dir / "model.pt", weights_only=True))
    return model, cfg
