"""Train one model: optimizer, schedule, loss, early stopping and divergence.

Each split lives on the device as one tensor; a batch is a slice of a shuffled
index, which is several times faster than a per-sample DataLoader for models
this small. The loop records one history row per epoch and keeps the weights
of the epoch with the lowest validation loss.

A run diverges when its training or validation loss becomes NaN or infinite,
or exceeds `DIVERGENCE_FACTOR` times the untrained model's validation loss.
Training then stops, the run is marked diverged with the epoch and the loss,
and the best weights seen before are kept: a divergence is a result, not a crash.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuninglab.lab import datasets, models
from tuninglab.lab.params import TrainConfig, no_cuda
from tuninglab.schema import HISTORY_COLUMNS

DIVERGENCE_FACTOR = 100.0
MAX_THREADS = 4
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[dict[str, float]], None]


def resolve_device(name: str, where: str = "train.device") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; `cuda` without a GPU is an error naming `where`."""
    if name == "cuda" and not torch.cuda.is_available():
        raise no_cuda(where)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def configure_threads(setting: int | str) -> int:
    """Set the intra-op thread count from `train.threads`; returns the count.

    Results are bit-for-bit repeatable for the same thread count only, which
    is why it is a param. `auto` takes `OMP_NUM_THREADS` when it is set, else
    one thread per core, at most `MAX_THREADS` (models this small gain nothing
    from more).
    """
    if setting == "auto":
        setting = int(os.environ.get("OMP_NUM_THREADS") or min(MAX_THREADS, os.cpu_count() or 1))
    torch.set_num_threads(int(setting))
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed torch and numpy and pick deterministic cuDNN kernels.

    CPU runs are then bit-for-bit repeatable. (`torch.use_deterministic_algorithms`
    is not used: it costs seconds of imports at every start-up.)
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


# Keyed by `train.optimizer`: SGD (with momentum and Nesterov), Adam or RMSprop, with L2 weight decay.
OPTIMIZERS: dict[str, Callable[[Iterator[nn.Parameter], TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda params, cfg: torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    ),
    "adam": lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "rmsprop": lambda params, cfg: torch.optim.RMSprop(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    ),
}

# Keyed by `train.scheduler`: the learning-rate schedule, or None. step: multiply by
# `gamma` every `step_size` epochs. cosine: anneal to zero over `epochs`. plateau:
# multiply by `gamma` after max(1, patience // 2) epochs without a better validation loss.
SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, TrainConfig], Any]] = {
    "none": lambda optimizer, cfg: None,
    "step": lambda optimizer, cfg: torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=cfg.step_size, gamma=cfg.gamma
    ),
    "cosine": lambda optimizer, cfg: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs),
    "plateau": lambda optimizer, cfg: torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=cfg.gamma, patience=max(1, cfg.patience // 2)
    ),
}


def _mse(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the softmax probabilities and one-hot targets."""
    one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
    return F.mse_loss(logits.softmax(dim=1), one_hot)


# Keyed by `train.loss`: cross-entropy on logits, or `_mse`.
LOSSES: dict[str, LossFn] = {"cross_entropy": F.cross_entropy, "mse": _mse}


def image_augmenter(strength: float, fill: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random rotation, shift and zoom, drawn per image; strength 1 = 10 degrees, 10%, 10%."""
    from torchvision.transforms import v2  # imported here: it adds seconds to every start-up

    affine = v2.RandomAffine(
        degrees=10 * strength,
        translate=(0.1 * strength, 0.1 * strength),
        scale=(1 - 0.1 * strength, 1 + 0.1 * strength),
        fill=fill,
    )
    return lambda batch: torch.stack([affine(image) for image in batch])


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of every matrix and kernel (biases and norms excluded)."""
    return sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for every row of `x`, in evaluation mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def score(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, batch_size: int
) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on one split."""
    logits = predict(model, x, batch_size)
    return loss_fn(logits, y).item(), (logits.argmax(dim=1) == y).float().mean().item()


def train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    generator: torch.Generator,
    augment: Callable[[torch.Tensor], torch.Tensor] | None,
) -> tuple[float, float]:
    """One pass over shuffled training batches; returns the mean data loss and accuracy."""
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, len(x), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        xb, yb = x[batch], y[batch]
        if augment is not None:
            xb = augment(xb)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        objective = loss + cfg.l1 * l1_penalty(model) if cfg.l1 > 0 else loss
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        total_loss += loss.detach() * len(batch)
        correct += (logits.argmax(dim=1) == yb).sum()
    return total_loss.item() / len(x), correct.item() / len(x)


def fit(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    cfg: TrainConfig,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train `model` in place on `data` (`x_train`, `y_train`, `x_val`, `y_val`).

    `augment` transforms each training batch; `on_epoch` receives each history row.

    Returns:
        The per-epoch history and a summary: best epoch (lowest validation
        loss; its weights are restored), best validation accuracy, epochs run,
        early stop, divergence, and the wall and CPU time of training (CPU
        time does not grow when other work shares the machine).
    """
    loss_fn = LOSSES[cfg.loss]
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
    scheduler = SCHEDULERS[cfg.scheduler](optimizer, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    x_train, y_train, x_val, y_val = (data[k] for k in ("x_train", "y_train", "x_val", "y_val"))
    batch_size = cfg.batch_size

    untrained_loss, _ = score(model, x_val, y_val, loss_fn, batch_size)
    limit = DIVERGENCE_FACTOR * untrained_loss
    best = {"epoch": 0, "val_loss": untrained_loss, "state": copy.deepcopy(model.state_dict())}
    history: list[dict[str, float]] = []
    summary: dict[str, Any] = {
        "diverged": False,
        "diverged_epoch": None,
        "diverged_loss": None,
        "stopped_early": False,
    }
    started, cpu_started = time.perf_counter(), time.process_time()
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_epoch(
            model, x_train, y_train, loss_fn, optimizer, cfg, generator, augment
        )
        val_loss, val_acc = score(model, x_val, y_val, loss_fn, batch_size)
        bad = next((v for v in (train_loss, val_loss) if not math.isfinite(v) or v > limit), None)
        if bad is not None:
            summary.update(diverged=True, diverged_epoch=epoch, diverged_loss=bad)
            break
        values = (epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - epoch_start)
        row = dict(zip(HISTORY_COLUMNS, values, strict=True))
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if val_loss < best["val_loss"]:
            best = {"epoch": epoch, "val_loss": val_loss, "state": copy.deepcopy(model.state_dict())}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        if cfg.patience and epoch - best["epoch"] >= cfg.patience:
            summary["stopped_early"] = True
            break
    model.load_state_dict(best["state"])
    summary.update(
        best_epoch=best["epoch"],
        best_val_loss=round(best["val_loss"], 6),
        best_val_accuracy=round(max(row["val_accuracy"] for row in history), 6) if history else None,
        epochs_run=epoch,
        train_time_s=round(time.perf_counter() - started, 3),
        cpu_time_s=round(time.process_time() - cpu_started, 3),
    )
    return history, summary


def train(
    kind: str,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
) -> tuple[nn.Module, list[dict[str, float]], dict[str, Any]]:
    """Seed, build the model, move data to `device`, fit.

    The model is the family that the spec of data type `kind` and `cfg.model` pick.

    Returns:
        The trained model (best weights, on the CPU), its history and summary;
        the summary also names the device and thread count used and counts
        the model's parameters.
    """
    spec = datasets.get(kind)
    threads = configure_threads(cfg.threads)
    seed_everything(cfg.seed)
    model = models.build(datasets.family(spec, cfg.model), meta, cfg).to(device)
    data = {
        name: torch.from_numpy(array).to(device)
        for name, array in arrays.items()
        if not name.endswith("_test")
    }
    augment = None
    if spec.augments and cfg.augment:
        augment = image_augmenter(cfg.augment_strength, fill=data["x_train"].min().item())
    history, summary = fit(model, data, cfg, augment, on_epoch)
    summary["used_device"] = device.type
    summary["used_threads"] = threads
    summary["n_params"] = sum(p.numel() for p in model.parameters())
    return model.cpu(), history, summary
