"""Train one model: optimizer, schedule, loss, early stopping and divergence.

Each split lives on the device as one tensor; a batch is a slice of a shuffled
index, which is several times faster than a per-sample DataLoader for models
this small. The loop records one history row per epoch and keeps the weights
of the best trained epoch (`train.select_by`: the lowest validation loss, or
the highest validation accuracy / R^2). The untrained weights are never kept:
an untrained model's validation loss can be lower than that of a model that
already classifies well but confidently (a few confident mistakes cost more
loss than a uniform guess), and keeping it would score the untrained model.

A run diverges when its training or validation loss becomes NaN or infinite,
or exceeds `DIVERGENCE_FACTOR` times the untrained model's validation loss.
Training then stops, the run is marked diverged with the epoch and the loss,
and the best trained weights seen before are kept: a divergence is a result,
not a crash. A run that diverges in its first epoch has no trained weights:
its `best_epoch` is None and no test metric is claimed for it.

On CUDA, `train.amp` runs the forward passes in float16 (autocast) with
gradient scaling, and convolutional models and their images use the
channels_last memory format. On the CPU neither applies: a CPU run is the
same, bit for bit, whatever `train.amp` says.
A dataset's task (its spec's `task`, a `tuninglab.tasks` record) picks, by
its name, its losses and what the history's accuracy columns hold (`TASKS`):
for a classifier the share of correct classes, for a regression the R^2 of the
predicted mean (1 - squared error / the variance of the split's targets).
"""

from __future__ import annotations

import copy
import inspect
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuninglab import tasks
from tuninglab.lab import compute, datasets, models
from tuninglab.lab.families import FAMILIES
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


# The methods of `torch.optim.Optimizer` that torch wraps in `torch._disable_dynamo`.
DYNAMO_WRAPPED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def eager(optimizer: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """A subclass of a torch optimizer that computes the same steps without importing `torch._dynamo`.

    torch wraps an optimizer's `step` (and `zero_grad`, `add_param_group`, ...)
    in functions that import `torch._dynamo`, and sympy with it, on their first
    call, so that `torch.compile` can trace around them: seconds of every train
    stage's start-up, more than the rest of its imports. The lab never
    compiles, so this subclass calls the wrapped functions themselves: `step`
    with gradients off (as its wrapper turns them off for an optimizer that is
    not `differentiable`), the others as they are. The arithmetic is torch's
    own, bit for bit; step hooks and learning-rate schedulers work as before.
    """
    step = inspect.unwrap(optimizer.step)

    def eager_step(self: torch.optim.Optimizer, closure: Callable[[], float] | None = None) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return step(self, closure)

    methods = {name: inspect.unwrap(getattr(torch.optim.Optimizer, name)) for name in DYNAMO_WRAPPED}
    doc = f"torch.optim.{optimizer.__name__}, stepping without torch._dynamo (`training.eager`)."
    return type(optimizer.__name__, (optimizer,), {"step": eager_step, **methods, "__doc__": doc})


SGD, ADAM, RMSPROP = (eager(o) for o in (torch.optim.SGD, torch.optim.Adam, torch.optim.RMSprop))

# Keyed by `train.optimizer`: SGD (with momentum and Nesterov), Adam or RMSprop, with L2 weight decay.
OPTIMIZERS: dict[str, Callable[[Iterator[nn.Parameter], TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda params, cfg: SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    ),
    "adam": lambda params, cfg: ADAM(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "rmsprop": lambda params, cfg: RMSPROP(
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

# The gaussian_nll head's variance never goes below this (the target is standardized: a standard
# deviation of 1 % of the training targets'), so the loss stays finite when it grows confident.
VARIANCE_FLOOR = 1e-4
GAUSSIAN_NLL = nn.GaussianNLLLoss(full=True, eps=VARIANCE_FLOOR)


def predicted_variance(outputs: torch.Tensor) -> torch.Tensor:
    """The variance a gaussian_nll model predicts per row: exp of its log-variance output, floored."""
    return outputs[:, 1].exp().clamp(min=VARIANCE_FLOOR)


def _regression_mse(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the predicted mean (the first output)."""
    return F.mse_loss(outputs[:, 0], target)


def _gaussian_nll(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the target under N(mean, variance): outputs are mean and log-variance.

    The full likelihood (with its constant log(2 pi) / 2), so that its value is the NLL itself.
    """
    return GAUSSIAN_NLL(outputs[:, 0], target, outputs[:, 1].exp())


# Keyed by `train.loss` of a regression: the predicted mean's squared error, or `_gaussian_nll`.
REGRESSION_LOSSES: dict[str, LossFn] = {"mse": _regression_mse, "gaussian_nll": _gaussian_nll}


def _correct(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(dim=1) == target).sum()


def _accuracy(correct: torch.Tensor, target: torch.Tensor) -> float:
    return correct.item() / len(target)


def _squared_errors(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((outputs[:, 0] - target) ** 2).sum()


def _r_squared(squared_errors: torch.Tensor, target: torch.Tensor) -> float:
    return 1 - squared_errors.item() / ((target - target.mean()) ** 2).sum().item()


def _split_accuracy(outputs: torch.Tensor, target: torch.Tensor) -> float:
    return (outputs.argmax(dim=1) == target).float().mean().item()


def _split_r_squared(outputs: torch.Tensor, target: torch.Tensor) -> float:
    return _r_squared(_squared_errors(outputs, target), target)


class Objective(NamedTuple):
    """How a task trains and what its history's accuracy columns hold (accuracy, or R^2).

    During an epoch `hits` is summed over the batches (correct classes,
    squared errors) and `quality` turns the sum and the split's targets into
    the value; `measure` gives it from a whole split's outputs at once.
    """

    losses: dict[str, LossFn]
    hits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    quality: Callable[[torch.Tensor, torch.Tensor], float]
    measure: Callable[[torch.Tensor, torch.Tensor], float]


# The torch side of each task, by its name (a dataset spec's `task.name`).
TASKS: dict[str, Objective] = {
    tasks.CLASSIFICATION.name: Objective(LOSSES, _correct, _accuracy, _split_accuracy),
    tasks.REGRESSION.name: Objective(REGRESSION_LOSSES, _squared_errors, _r_squared, _split_r_squared),
}


Augment = Callable[[torch.Tensor], torch.Tensor]


def _uniform(n: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
    """`n` numbers drawn uniformly from [-half_width, half_width], on the generator's device."""
    return (torch.rand(n, generator=generator, device=generator.device) * 2 - 1) * half_width


def affine_augmenter(strength: float, fill: torch.Tensor, generator: torch.Generator) -> Augment:
    """Random rotation, shift and zoom of each image, a whole batch at once on its device.

    Strength 1 draws up to 10 degrees, a 10 % shift of each side and 10 %
    zoom, per image; pixels are taken from the nearest source pixel, and those
    from outside the image get `fill` (one value per channel).
    """

    def augment(batch: torch.Tensor) -> torch.Tensor:
        n, _, height, width = batch.shape
        angle = _uniform(n, math.radians(10 * strength), generator)
        zoom = 1 + _uniform(n, 0.1 * strength, generator)
        shift = torch.stack([_uniform(n, 0.2 * strength, generator) for _ in range(2)], dim=1)  # of [-1, 1]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps each output pixel to the input pixel it shows: the inverse rotation and zoom,
        # in coordinates that run from -1 to 1 across the width and across the height.
        inverse = torch.stack(
            [torch.stack([cos, sin * height / width], 1), torch.stack([-sin * width / height, cos], 1)], 1
        )
        theta = torch.cat([inverse, -(inverse @ shift.unsqueeze(2))], dim=2)
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        moved = F.grid_sample(batch, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        inside = F.grid_sample(torch.ones_like(batch[:, :1]), grid, mode="nearest", align_corners=False)
        return torch.where(inside > 0, moved, fill.view(1, -1, 1, 1))

    return augment


def crop_flip_augmenter(strength: float, fill: torch.Tensor, generator: torch.Generator) -> Augment:
    """The CIFAR set: a random crop of each image padded by 4 pixels a side, and a horizontal flip of half.

    The padding is `round(4 * strength)` pixels of `fill` (one value per
    channel); a whole batch is cropped and flipped at once on its device, by
    one gather of each output pixel's source pixel (the flip reverses the
    columns it reads).
    """
    pad = round(4 * strength)

    def augment(batch: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = batch.shape
        wide = width + 2 * pad
        padded = fill.view(1, -1, 1, 1).expand(n, channels, height + 2 * pad, wide).clone()
        padded[:, :, pad : pad + height, pad : pad + width] = batch
        top, left = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=generator.device)
        flip = torch.rand(n, generator=generator, device=generator.device) < 0.5
        columns = torch.arange(width, device=batch.device)
        columns = torch.where(flip[:, None], columns.flip(0), columns) + left[:, None]
        rows = top[:, None] + torch.arange(height, device=batch.device)
        source = (rows[:, :, None] * wide + columns[:, None, :]).view(n, 1, height * width)
        cropped = padded.view(n, channels, -1).gather(2, source.expand(n, channels, -1))
        return cropped.view(n, channels, height, width)

    return augment


# Keyed by `<group>.train.augment_set`: (augment_strength, fill per channel, generator) -> augmenter.
AUGMENTERS: dict[str, Callable[[float, torch.Tensor, torch.Generator], Augment]] = {
    "affine": affine_augmenter,
    "crop_flip": crop_flip_augmenter,
}


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of every matrix and kernel (biases and norms excluded)."""
    return sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for every row of `x`, in evaluation mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def score(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    batch_size: int,
    task: Objective = TASKS[tasks.CLASSIFICATION.name],
) -> tuple[float, float]:
    """Mean loss and accuracy (R^2 for a regression `task`) of `model` on one split."""
    outputs = predict(model, x, batch_size)
    return loss_fn(outputs, y).item(), task.measure(outputs, y)


def mixed_precision(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether a run uses mixed precision: `train.amp` on a CUDA device (the CPU ignores it)."""
    return cfg.amp and device.type == "cuda"


def _autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """float16 autocast on `device` when `enabled`; otherwise a context that changes nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled)


def train_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    generator: torch.Generator,
    augment: Augment | None,
    scaler: torch.amp.GradScaler,
    task: Objective = TASKS[tasks.CLASSIFICATION.name],
) -> tuple[float, float]:
    """One pass over shuffled training batches; returns the mean data loss and accuracy (or R^2).

    With mixed precision (`scaler` enabled) the forward pass runs under
    autocast and the loss is scaled; a disabled scaler passes it through.
    """
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total_loss = torch.zeros((), device=x.device)
    hits = torch.zeros((), device=x.device)
    for start in range(0, len(x), cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        xb, yb = x[batch], y[batch]
        if augment is not None:
            xb = augment(xb)
        with _autocast(x.device, scaler.is_enabled()):
            logits = model(xb)
            loss = loss_fn(logits, yb)
        objective = loss + cfg.l1 * l1_penalty(model) if cfg.l1 > 0 else loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss.detach() * len(batch)
        hits += task.hits(logits.detach(), yb)
    return total_loss.item() / len(x), task.quality(hits, y)


# `train.select_by`: the history column that picks the kept epoch, and whether higher is better.
SELECTORS: dict[str, tuple[str, bool]] = {
    "val_loss": ("val_loss", False),
    "val_metric": ("val_accuracy", True),
}


def better(row: dict[str, float], best: dict[str, float], select_by: str) -> bool:
    """Whether epoch `row` beats the kept epoch `best` by `select_by` (a tie keeps the earlier epoch)."""
    column, higher = SELECTORS[select_by]
    return row[column] > best[column] if higher else row[column] < best[column]


def fit(
    model: nn.Module,
    data: dict[str, torch.Tensor],
    cfg: TrainConfig,
    augment: Augment | None = None,
    on_epoch: EpochCallback | None = None,
    task: Objective = TASKS[tasks.CLASSIFICATION.name],
) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train `model` in place on `data` (`x_train`, `y_train`, `x_val`, `y_val`).

    `augment` transforms each training batch; `on_epoch` receives each history row; `task` (the
    task's entry of `TASKS`) picks the loss table and what the accuracy columns hold.

    Returns:
        The per-epoch history and a summary: the best trained epoch (by
        `cfg.select_by`; its weights are restored, and early stopping counts
        from it) and its validation loss, both None when the first epoch
        diverged (nothing trained); the best validation
        accuracy, epochs run, early stop, divergence, and the wall and CPU time
        of training (CPU time does not grow when other work shares the machine).
    """
    loss_fn = task.losses[cfg.loss]
    optimizer = OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
    scheduler = SCHEDULERS[cfg.scheduler](optimizer, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    x_train, y_train, x_val, y_val = (data[k] for k in ("x_train", "y_train", "x_val", "y_val"))
    batch_size = cfg.batch_size
    amp = mixed_precision(cfg, x_train.device)
    scaler = torch.amp.GradScaler(x_train.device.type, enabled=amp)

    with _autocast(x_train.device, amp):
        untrained_loss, _ = score(model, x_val, y_val, loss_fn, batch_size, task)
    limit = DIVERGENCE_FACTOR * untrained_loss
    best: dict[str, Any] | None = None
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
            model, x_train, y_train, loss_fn, optimizer, cfg, generator, augment, scaler, task
        )
        with _autocast(x_train.device, amp):
            val_loss, val_acc = score(model, x_val, y_val, loss_fn, batch_size, task)
        bad = next((v for v in (train_loss, val_loss) if not math.isfinite(v) or v > limit), None)
        if bad is not None:
            summary.update(diverged=True, diverged_epoch=epoch, diverged_loss=bad)
            break
        values = (epoch, train_loss, train_acc, val_loss, val_acc, lr, time.perf_counter() - epoch_start)
        row = dict(zip(HISTORY_COLUMNS, values, strict=True))
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if best is None or better(row, best["row"], cfg.select_by):
            best = {"row": row, "state": copy.deepcopy(model.state_dict())}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        elif scheduler is not None:
            scheduler.step()
        if cfg.patience and epoch - best["row"]["epoch"] >= cfg.patience:
            summary["stopped_early"] = True
            break
    if best is not None:
        model.load_state_dict(best["state"])
    summary.update(
        best_epoch=best["row"]["epoch"] if best else None,
        best_val_loss=round(best["row"]["val_loss"], 6) if best else None,
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
        the summary also names the device and thread count used, counts the
        model's parameters and records how the run was computed (`compute.environment`).
    """
    spec = datasets.get(kind)
    threads = configure_threads(cfg.threads)
    seed_everything(cfg.seed)
    family = datasets.family(spec, cfg.model)
    model = models.build(family, meta, cfg).to(device)
    data = {
        name: torch.from_numpy(array).to(device)
        for name, array in arrays.items()
        if not name.endswith("_test")
    }
    if device.type == "cuda" and FAMILIES[family].convolutional:
        model = model.to(memory_format=torch.channels_last)
        data = {
            k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in data.items()
        }
    augment = None
    if spec.augments and cfg.augment:
        # Padding and uncovered corners get each channel's lowest training value: black, as in the raw images.
        fill = data["x_train"].amin(dim=(0, 2, 3))
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
        augment = AUGMENTERS[cfg.augment_set](cfg.augment_strength, fill, generator)
    history, summary = fit(model, data, cfg, augment, on_epoch, TASKS[spec.task.name])
    summary["used_device"] = device.type
    summary["used_threads"] = threads
    summary["n_params"] = sum(p.numel() for p in model.parameters())
    summary.update(compute.environment())
    return model.cpu(), history, summary
