"""Check that the settings fit this machine, before any stage runs.

Param rules say what a value may be; this module says whether this machine
can run it: a CUDA device when `train.device` is `cuda`, and enough memory for
the data arrays and the model that the settings ask for. DVC deletes a
stage's outputs before running it, so these checks belong to the
`check_params` stage, which runs before every other stage.

The memory estimate is an upper bound of the big terms only (the data arrays
in the prepare and train stages, and the weights with their gradients,
optimizer state and the saved best copy); it exists to refuse settings that
cannot fit, not to predict the exact peak.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from typing import Any

from tuninglab.lab import datasets
from tuninglab.lab.params import ParamError, TrainConfig, dataset_groups, dataset_spec, no_cuda, train_config

BYTES_PER_WEIGHT = 4  # float32
COPIES_OF_ARRAYS = 3  # raw rows, the encoded matrix, the split copies
COPIES_OF_WEIGHTS = 5  # weights, gradients, two optimizer moments, the best epoch's copy
MEMORY_SHARE = 0.8  # refuse an estimate above this share of the machine's memory


def machine_memory() -> int:
    """Bytes of physical memory of this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def _mlp_weights(in_features: int, hidden: list[int], n_classes: int) -> int:
    widths = [in_features, *hidden, n_classes]
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


# Per model family: (dataset, its data params, settings, input values per row, classes) ->
# (weights, the params other than the hidden widths that size them).
FamilyWeights = Callable[[str, dict[str, Any], TrainConfig, int, int], tuple[int, list[str]]]


def _mlp_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, width: int, n_classes: int
) -> tuple[int, list[str]]:
    """The input flattened to `width` values, then the fully connected layers."""
    return _mlp_weights(width, cfg.hidden, n_classes), []


def _cnn_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, width: int, n_classes: int
) -> tuple[int, list[str]]:
    """The source's images (`datasets.image_shape`) through the convolution blocks, then the head."""
    in_channels, *sides = datasets.image_shape(data)
    channels = [in_channels, *cfg.channels]
    norms = 2 if cfg.batch_norm else 0  # a scale and a shift per channel
    convolutions = sum(9 * a * b + b + norms * b for a, b in itertools.pairwise(channels))
    pooled = math.prod(side // 2 ** len(cfg.channels) for side in sides)
    weights = convolutions + _mlp_weights(channels[-1] * pooled, cfg.hidden, n_classes)
    return weights, [f"{dataset}.train.channels={cfg.channels}"]


def _embedding_bag_size(
    dataset: str, data: dict[str, Any], cfg: TrainConfig, width: int, n_classes: int
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
    dataset: str, data: dict[str, Any], cfg: TrainConfig, width: int, n_classes: int
) -> tuple[int, list[str]]:
    """The stem, the basic blocks of `datasets.RESNET_BLOCKS`, then the linear head.

    A block has two 3x3 convolutions with their batch norms, and a 1x1
    convolution with a batch norm on its shortcut where the width changes.
    """
    base, in_channels = cfg.resnet_width, datasets.image_shape(data)[0]
    weights = 9 * in_channels * base + 2 * base
    in_channels = base
    for stage, blocks in enumerate(datasets.RESNET_BLOCKS[cfg.resnet_depth]):
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


FAMILY_WEIGHTS: dict[str, FamilyWeights] = {
    "mlp": _mlp_size,
    "cnn": _cnn_size,
    "embedding_bag": _embedding_bag_size,
    "resnet": _resnet_size,
}


def memory_estimate(params: dict[str, Any], dataset: str) -> dict[str, tuple[float, str]]:
    """The big memory terms of one dataset's run: name -> (bytes, the params that size it).

    The data arrays' size comes from the dataset's spec (`input_size`), the
    model's from its family (`FAMILY_WEIGHTS`).
    """
    spec = dataset_spec(params, dataset)
    cfg = train_config(params, dataset)
    data = params[dataset]["data"]
    hidden_key = f"{dataset}.train.hidden" if "hidden" in (params[dataset]["train"] or {}) else "train.hidden"
    rows, width = spec.input_size(data)
    arrays = rows * width * spec.value_bytes * COPIES_OF_ARRAYS
    weights, sized_by = FAMILY_WEIGHTS[datasets.family(spec, cfg.model)](
        dataset, data, cfg, width, spec.classes
    )
    return {
        "data arrays": (arrays, f"{dataset}.data.{spec.size_param}={data[spec.size_param]}"),
        "model": (
            weights * BYTES_PER_WEIGHT * COPIES_OF_WEIGHTS,
            ", ".join([*sized_by, f"{hidden_key}={cfg.hidden}"]),
        ),
    }


def check_memory(params: dict[str, Any], available: int | None = None) -> None:
    """Refuse settings whose memory estimate exceeds `MEMORY_SHARE` of the machine's memory.

    Raises:
        ParamError: names the dataset, the estimate of each term with the
            params that size it, and the machine's memory.
    """
    available = machine_memory() if available is None else available
    for dataset in dataset_groups(params):
        terms = memory_estimate(params, dataset)
        total = sum(n_bytes for n_bytes, _ in terms.values())
        if total > MEMORY_SHARE * available:
            largest = max(terms, key=lambda name: terms[name][0])
            parts = "; ".join(f"{name} {_size(n)} ({sized_by})" for name, (n, sized_by) in terms.items())
            raise ParamError(
                f"{dataset}: these settings need about {_size(total)} of memory and this machine has "
                f"{_size(available)} ({parts}); lower {terms[largest][1]}"
            )


def check_device(params: dict[str, Any]) -> None:
    """Refuse `train.device: cuda` (or a dataset's override) when no CUDA device is present.

    Raises:
        ParamError: names the parameter and what is allowed here.
    """
    for dataset in dataset_groups(params):
        overrides = params[dataset]["train"] or {}
        where = f"{dataset}.train.device" if "device" in overrides else "train.device"
        if train_config(params, dataset).device == "cuda":
            import torch  # only when asked for: it costs seconds of start-up

            if not torch.cuda.is_available():
                raise no_cuda(where)


def check(params: dict[str, Any]) -> None:
    """Every check of this module, on validated params."""
    check_device(params)
    check_memory(params)
