"""The CUDA path: mixed precision, channels_last convolutions, data on the device. Skipped without a GPU.

These run on a machine with a CUDA device (none is needed for the rest of the
suite); the CPU side of the same settings is in test_training.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import split_arrays
from tests.conftest import train_config as config
from tuninglab.lab import training

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def colour_arrays(n: int = 600, seed: int = 0) -> dict[str, np.ndarray]:
    """Colour 3x16x16 images whose class (0-2) is the channel with a bright corner."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3, 16, 16)).astype(np.float32)
    y = np.arange(n) % 3
    x[np.arange(n), y, :6, :6] += 3
    return split_arrays(x, y)


META = {"task": "classification", "classes": ["r", "g", "b"], "input_shape": [3, 16, 16], "preprocessing": {}}


@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_convolutional_models_learn_on_cuda_with_and_without_amp(amp, model):
    settings = config(
        model=model, channels=[8, 16], batch_norm=True, resnet_width=8, resnet_depth=18, amp=amp, epochs=5
    )
    trained, _, summary = training.train("image", colour_arrays(), META, settings, CUDA)
    assert summary["used_device"] == "cuda" and not summary["diverged"]
    assert summary["best_val_accuracy"] > 0.9
    convs = [m.weight for m in trained.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)  # trained in channels_last
    assert all(p.dtype == torch.float32 for p in trained.parameters())  # amp keeps float32 weights


def test_a_cuda_run_repeats_itself():
    settings = config(model="cnn", channels=[8], batch_norm=True, amp=True, epochs=3)
    first = training.train("image", colour_arrays(), META, settings, CUDA)[1]
    again = training.train("image", colour_arrays(), META, settings, CUDA)[1]
    assert [r["val_loss"] for r in first] == [r["val_loss"] for r in again]


@pytest.mark.parametrize("augment_set", list(training.AUGMENTERS))
def test_augmentation_runs_on_the_device(augment_set):
    batch = torch.zeros(256, 3, 32, 32, device=CUDA)
    fill = torch.zeros(3, device=CUDA)
    out = training.AUGMENTERS[augment_set](1.0, fill, torch.Generator(device=CUDA).manual_seed(0))(batch)
    assert out.device.type == "cuda" and out.shape == batch.shape
