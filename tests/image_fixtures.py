"""Tiny image benchmarks written in each torchvision dataset's own on-disk format.

Each writer puts its files where the real `torchvision.datasets` loader looks
for them under a root folder, so the tests run the loaders themselves with no
network: MNIST and Fashion-MNIST as IDX files in `<root>/<Class>/raw/`,
CIFAR-10 as the pickled batches of `<root>/cifar-10-batches-py/`, USPS as the
bzip2-compressed libsvm files `<root>/usps.bz2` and `<root>/usps.t.bz2`.

The images are learnable: each class is a bright square at its own place on a
noisy background.
"""

from __future__ import annotations

import bz2
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

CLASSES = 10
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def class_images(per_class: int, shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, C, H, W) images and their labels 0-9, `per_class` of each class, in shuffled order."""
    channels, height, width = shape
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(CLASSES), per_class))
    images = rng.integers(0, 60, size=(len(labels), channels, height, width), dtype=np.uint8)
    side = height // 4
    for row, label in enumerate(labels):
        top, left = (label // 5) * side, (label % 5) * (width // 5)
        images[row, :, top : top + side, left : left + side] = 255
    return images, labels.astype(np.int64)


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic (0, 0, type 0x08, dimensions), big-endian sizes, the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(
    root: Path, loader: str, per_class: tuple[int, int]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-format IDX files in `<root>/<loader>/raw/` (`loader`: MNIST or FashionMNIST).

    `per_class` is the number of training and of test images of each class.
    Returns the images (N, 1, 28, 28) and labels of each part.
    """
    folder = root / loader / "raw"
    folder.mkdir(parents=True)
    parts = {}
    for part, prefix, count, seed in (("train", "train", per_class[0], 1), ("test", "t10k", per_class[1], 2)):
        images, labels = class_images(count, (1, 28, 28), seed)
        _idx(folder / f"{prefix}-images-idx3-ubyte", images[:, 0])
        _idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
        parts[part] = (images, labels)
    return parts


def write_cifar10(root: Path, per_class: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10's python batches in `<root>/cifar-10-batches-py/`: five training batches, a test batch, meta.

    Each batch pickles a dict of `data` (rows of 3072 bytes: the red, green and
    blue planes of a 32x32 image) and `labels`; `batches.meta` holds the class
    names under `label_names`. Returns the images (N, 3, 32, 32) and labels of each part.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train = class_images(per_class[0], (3, 32, 32), seed=3)
    test = class_images(per_class[1], (3, 32, 32), seed=4)
    batches = zip(CIFAR_BATCHES, np.array_split(np.arange(len(train[1])), len(CIFAR_BATCHES)), strict=True)
    for name, rows in batches:
        entry = {"data": train[0][rows].reshape(len(rows), -1), "labels": train[1][rows].tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "test_batch").write_bytes(
        pickle.dumps({"data": test[0].reshape(len(test[1]), -1), "labels": test[1].tolist()})
    )
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}))
    return {"train": train, "test": test}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def accept_cifar10_fixture(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Let torchvision's CIFAR10 loader accept the fixture: in this test only, its md5s are the fixture's.

    The loader checks every batch and the meta file against the md5s of the
    real files (`_check_integrity`, `_load_meta`) before reading them.
    """
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    monkeypatch.setattr(CIFAR10, "train_list", [[name, _md5(folder / name)] for name in CIFAR_BATCHES])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})


# The same, for the stage processes `dvc` starts: a sitecustomize module on their PYTHONPATH.
CIFAR10_SITECUSTOMIZE = '''
"""Test only: torchvision's CIFAR10 loader accepts the fixture under $TUNINGLAB_TORCHVISION_ROOT."""
import hashlib
import os
import sys
from pathlib import Path

if "stages.download" in getattr(sys, "orig_argv", []):
    from torchvision.datasets import CIFAR10

    folder = Path(os.environ["TUNINGLAB_TORCHVISION_ROOT"]) / CIFAR10.base_folder

    def md5(name):
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    CIFAR10.train_list = [[name, md5(name)] for name, _ in CIFAR10.train_list]
    CIFAR10.test_list = [[name, md5(name)] for name, _ in CIFAR10.test_list]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5(CIFAR10.meta["filename"])}
'''


def write_usps(root: Path, per_class: tuple[int, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """USPS's libsvm files `<root>/usps.bz2` and `<root>/usps.t.bz2`, bzip2-compressed.

    One image a line: its label 1-10, then `index:value` for each of the 256
    pixels, values in [-1, 1]. The fixture's pixels are black or white (-1 or
    1), which the loader maps to exactly 0 or 255. Returns the images
    (N, 1, 16, 16) and labels 0-9 of each part.
    """
    root.mkdir(parents=True, exist_ok=True)
    parts = {}
    for part, name, count, seed in (
        ("train", "usps.bz2", per_class[0], 5),
        ("test", "usps.t.bz2", per_class[1], 6),
    ):
        images, labels = class_images(count, (1, 16, 16), seed)
        images = np.where(images > 127, 255, 0).astype(np.uint8)
        lines = []
        for image, label in zip(images, labels, strict=True):
            values = " ".join(f"{i}:{1 if v else -1}" for i, v in enumerate(image.ravel(), start=1))
            lines.append(f"{label + 1} {values}\n")
        (root / name).write_bytes(bz2.compress("".join(lines).encode()))
        parts[part] = (images, labels)
    return parts
