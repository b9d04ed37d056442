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

import os
from typing import Any

from tuninglab.lab import datasets
from tuninglab.lab.families import FAMILIES
from tuninglab.lab.params import ParamError, dataset_groups, dataset_spec, no_cuda, train_config

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


def memory_estimate(params: dict[str, Any], dataset: str) -> dict[str, tuple[float, str]]:
    """The big memory terms of one dataset's run: name -> (bytes, the params that size it).

    The data arrays' size comes from the dataset's spec (`input_size`), the
    model's from its family's record (`families.FAMILIES`).
    """
    spec = dataset_spec(params, dataset)
    cfg = train_config(params, dataset)
    data = params[dataset]["data"]
    hidden_key = f"{dataset}.train.hidden" if "hidden" in (params[dataset]["train"] or {}) else "train.hidden"
    rows, width = spec.input_size(data)
    arrays = rows * width * spec.value_bytes * COPIES_OF_ARRAYS
    shape = spec.input_shape(data) if spec.input_shape is not None else (width,)
    weights, sized_by = FAMILIES[datasets.family(spec, cfg.model)].weights(
        dataset, data, cfg, shape, spec.classes
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
