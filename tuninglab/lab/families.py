"""The model families a data type's spec names: one `Family` record each, torch-free.

A record holds what the checks and the report need of a family: how many
weights a run's settings give it (the memory check, `resources`), whether it
is built of 2-D convolutions (on CUDA those train in the channels_last memory
format) and which of its `<group>.train` settings the report's set-up table
shows. The torch module of each family is built by `models.BUILDERS`, keyed by
the family's name (a test checks both name the same families).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuninglab.lab.params import TrainConfig

# The resnet family's basic blocks per stage, by `<group>.train.resnet_depth` (torchvision's ResNet-18, -34).
RESNET_BLOCKS: dict[int, tuple[int, ...]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _mlp_weights(in_features: int, hidden: list[int], n_classes: int) -> int:
    widths = [in_features, *hidden, n_classes]
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


# Per model family: (dataset, its data params, settings, the shape of one input, classes) ->
# (weights, the params other than the hidden widths that size them).
FamilyWeights = Callable[[str, dict[str, Any], TrainConfig, tuple[int, ...], int], tuple[int, list[str]]]


def _mlp_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, shape: tuple[int, ...], n_classes: int
) -> tuple[int, list[str]]:
    """The input flattened to its values, then the fully connected layers."""
    return _mlp_weights(math.prod(shape), cfg.hidden, n_classes), []


def _cnn_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, shape: tuple[int, ...], n_classes: int
) -> tuple[int, list[str]]:
    """The source's images (its spec's `input_shape`) through the convolution blocks, then the head."""
    in_channels, *sides = shape
    channels = [in_channels, *cfg.channels]
    norms = 2 if cfg.batch_norm else 0  # a scale and a shift per channel
    convolutions = sum(9 * a * b + b + norms * b for a, b in itertools.pairwise(channels))
    pooled = math.prod(side // 2 ** len(cfg.channels) for side in sides)
    weights = convolutions + _mlp_weights(channels[-1] * pooled, cfg.hidden, n_classes)
    return weights, [f"{dataset}.train.channels={cfg.channels}"]


def _embedding_bag_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, shape: tuple[int, ...], n_classes: int
) -> tuple[int, list[str]]:
    """One embedding per word and character n-gram kept (and the padding id), then the head."""
    n_grams = data["vocab_size"] + (data["char_vocab_size"] if data["char_ngrams"] else 0)
    weights = (n_grams + 1) * cfg.embedding_dim + _mlp_weights(cfg.embedding_dim, cfg.hidden, n_classes)
    return weights, [
        f"{dataset}.train.embedding_dim={cfg.embedding_dim}",
        f"{dataset}.data.vocab_size={data['vocab_size']}",
        f"{dataset}.data.char_vocab_size={data['char_vocab_size']}",
    ]


def _resnet_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, shape: tuple[int, ...], n_classes: int
) -> tuple[int, list[str]]:
    """The stem, the basic blocks of `RESNET_BLOCKS`, then the linear head.

    A block has two 3x3 convolutions with their batch norms, and a 1x1
    convolution with a batch norm on its shortcut where the width changes.
    """
    base, in_channels = cfg.resnet_width, shape[0]
    weights = 9 * in_channels * base + 2 * base
    in_channels = base
    for stage, blocks in enumerate(RESNET_BLOCKS[cfg.resnet_depth]):
        channels = base * 2**stage
        for block in range(blocks):
            block_in = in_channels if block == 0 else channels
            weights += 9 * block_in * channels + 9 * channels * channels + 4 * channels
            if block_in != channels:
                weights += block_in * channels + 2 * channels
        in_channels = channels
    weights += (in_channels + 1) * n_classes
    return weights, [
        f"{dataset}.train.resnet_width={cfg.resnet_width}",
        f"{dataset}.train.resnet_depth={cfg.resnet_depth}",
    ]


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: its `<group>.train.model` value (and a data type spec's `families` entry).
        weights: the size of its model for a run's settings (`FamilyWeights`).
        convolutional: built of 2-D convolutions: on CUDA it trains in channels_last memory format.
        shown: its own `<group>.train` settings that the report's set-up table shows.
    """

    name: str
    weights: FamilyWeights
    convolutional: bool = False
    shown: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("mlp", _mlp_size),
        Family("cnn", _cnn_size, convolutional=True, shown=("channels",)),
        Family("embedding_bag", _embedding_bag_size, shown=("embedding_dim",)),
        Family("resnet", _resnet_size, convolutional=True),
    )
}
