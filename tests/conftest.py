"""Shared fixtures: the project's default parameters and small synthetic datasets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tuninglab import params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_params() -> dict[str, Any]:
    """A fresh copy of the repository's params.yaml."""
    return copy.deepcopy(params.load(ROOT / "params.yaml"))


def blobs(
    n_per_class: int = 60, n_classes: int = 3, n_features: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs: an easy problem any model should learn."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(n_classes, n_features))
    x = np.concatenate([c + rng.normal(size=(n_per_class, n_features)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(n_classes), n_per_class).astype(np.int64)
    return x, y


def split_arrays(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """A shuffled 60/20/20 split in the layout the prepare stage writes."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut1, cut2 = int(0.6 * len(x)), int(0.8 * len(x))
    parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    arrays = {}
    for name, idx in parts.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    return arrays
