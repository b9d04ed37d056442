"""Measure where an experiment's time goes, against the targets of issue 12, in one run.

Parts (each selectable with `--parts`; all by default), each a median over `--repeats`:

- imports: wall time of `python -c "import <module>"` for each stage module,
  next to `python -c pass` (the interpreter) and `import torch` (the floor of
  a training stage).
- stages: each train stage run whole on the workspace's prepared data, in a
  scratch folder (the workspace's metrics and plots are left alone): its wall
  time, the training time it reports (`train_time_s`), the difference (the
  stage's start-up and writing) and its peak RSS
  (`resource.getrusage(RUSAGE_CHILDREN)` in a small launcher process).
- loop: samples/s of the lab's training epoch (`training.train_epoch`) for the
  image CNN and the text model against a bare PyTorch loop over the same model,
  batch and data, alternated in this process.
- augment: the image CNN's epoch time with `augment: true` over `false`, per
  augmentation set, alternated in this process.
- fixed: in a clone of the current commit (a temporary folder, `dvc repro`
  first, not timed), the wall time of `dvc exp run --temp -S train.lr=...`
  (a new value per repeat, so that DVC's run cache cannot answer) minus the
  summed training time its train stages report.

The stages, loop and augment parts read data/prepared/ (run `dvc repro` first).
Usage: python -m benchmarks.speed [--parts imports,stages,loop,augment,fixed] [--repeats N]
(or `make bench-speed`). Timings on a shared machine are noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
PARTS = ("imports", "stages", "loop", "augment", "fixed")
STAGE_MODULES = ("stages.check_params", "stages.download", "stages.prepare", "stages.train")
LOOP_DATASETS = ("image", "text")  # the image CNN and the text model
LOOP_EPOCHS = 1  # epochs per timing of the loop and augment parts

# Targets of issue 12: (comparison, value).
TARGETS = {
    "loop": (">=", 0.90),
    "augment": ("<=", 1.3),
    "rss_mb": ("<=", 800),
    "fixed_s": ("<=", 8.0),
}

Row = tuple[str, float, str]  # what, value, unit or target note

# Runs the command in its arguments; prints its wall seconds and its peak RSS in KiB (the largest child's).
LAUNCHER = (
    "import resource, subprocess, sys, time; start = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _verdict(key: str, value: float) -> str:
    comparison, target = TARGETS[key]
    met = value >= target if comparison == ">=" else value <= target
    return f"target {comparison} {target}: {'ok' if met else 'MISSED'}"


def _wall(args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> float:
    """Seconds one command takes; raises with its last error line when it fails."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{' '.join(args)} failed: {lines[-1]}")
    return time.perf_counter() - start


def imports(repeats: int) -> list[Row]:
    """Median wall time of importing each stage module, the interpreter alone and torch alone."""
    codes = {"python -c pass": "pass", "import torch": "import torch"}
    codes |= {f"import {module}": f"import {module}" for module in STAGE_MODULES}
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(repeats):  # interleaved, so that a busy spell of the machine hits every command alike
        for name, code in codes.items():
            times[name].append(_wall([sys.executable, "-c", code]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    rows = [(name, value, "s") for name, value in medians.items()]
    train = medians["import stages.train"] - medians["import torch"]
    rows.append(("import stages.train minus import torch", train, "s"))
    return rows


def _prepared(dataset: str) -> Path:
    folder = ROOT / "data" / "prepared" / dataset
    if not (folder / "data.npz").is_file():
        raise SystemExit(f"error: {folder.relative_to(ROOT)}: not found; run `dvc repro` first")
    return folder


def _datasets() -> list[str]:
    from tuninglab.lab import params

    return list(params.dataset_groups(params.load(ROOT / "params.yaml")))


def stages(repeats: int) -> list[Row]:
    """Each train stage whole, in a scratch folder: wall, reported training time, the rest, peak RSS."""
    from tuninglab import schema
    from tuninglab.lab.files import read_json

    rows: list[Row] = []
    for dataset in _datasets():
        walls, trains, rss = [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                scratch = Path(tmp)
                (scratch / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
                command = [sys.executable, "-m", "stages.train", dataset, str(_prepared(dataset))]
                command.append(str(scratch / "models" / dataset))
                env = {**ENV, "PYTHONPATH": str(ROOT)}
                # A small launcher starts the stage: a child's peak RSS counts the memory of the process
                # it was forked from, and this one holds the other parts' data and models.
                launched = subprocess.run(
                    [sys.executable, "-c", LAUNCHER, *command],
                    cwd=scratch,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if launched.returncode != 0:
                    lines = (launched.stderr or launched.stdout).strip().splitlines() or ["no output"]
                    raise RuntimeError(f"{' '.join(command)} failed: {lines[-1]}")
                seconds, kib = launched.stdout.split()
                walls.append(float(seconds))
                rss.append(int(kib) / 1024)  # ru_maxrss is in KiB on Linux
                summary = read_json(scratch / schema.metrics_path(dataset, "train"))[dataset]
                trains.append(summary["train_time_s"])
        wall, train = statistics.median(walls), statistics.median(trains)
        rows += [
            (f"{dataset}: train stage wall", wall, "s"),
            (f"{dataset}: its reported training time", train, "s"),
            (f"{dataset}: start-up, evaluation and writing (wall - training)", wall - train, "s"),
            (f"{dataset}: peak RSS", max(rss), f"MB, {_verdict('rss_mb', max(rss))}"),
        ]
    return rows


def _setup(dataset: str) -> dict[str, Any]:
    """The workspace's model, settings and training tensors of one dataset, as its train stage builds them."""
    import torch

    from tuninglab.lab import datasets, models, params, training
    from tuninglab.lab.files import load_arrays

    p = params.load(ROOT / "params.yaml")
    cfg = params.train_config(p, dataset)
    spec = params.dataset_spec(p, dataset)
    arrays, meta = load_arrays(_prepared(dataset))
    training.configure_threads(cfg.threads)
    training.seed_everything(cfg.seed)
    model = models.build(datasets.family(spec, cfg.model), meta, cfg)
    x, y = torch.from_numpy(arrays["x_train"]), torch.from_numpy(arrays["y_train"])
    return {"cfg": cfg, "spec": spec, "model": model, "x": x, "y": y, "task": training.TASKS[spec.task.name]}


def _lab_epoch(setup: dict[str, Any], augment: Callable | None = None) -> float:
    """Seconds of one epoch of the lab's own loop on a copy of the setup's model."""
    import torch

    from tuninglab.lab import training

    cfg, model = setup["cfg"], copy.deepcopy(setup["model"])
    loss_fn = setup["task"].losses[cfg.loss]
    optimizer = training.OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    generator = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for _ in range(LOOP_EPOCHS):
        training.train_epoch(
            model, setup["x"], setup["y"], loss_fn, optimizer, cfg, generator, augment, scaler, setup["task"]
        )
    return time.perf_counter() - start


def _bare_epoch(setup: dict[str, Any]) -> float:
    """Seconds of one epoch of a plain PyTorch loop: shuffled slices, forward, backward, torch's step."""
    import torch

    from tuninglab.lab import training

    cfg, model = setup["cfg"], copy.deepcopy(setup["model"])
    loss_fn = setup["task"].losses[cfg.loss]
    lab_optimizer = training.OPTIMIZERS[cfg.optimizer](model.parameters(), cfg)
    torch_class = type(lab_optimizer).__mro__[1]  # torch's own optimizer (`training.eager`)
    optimizer = torch_class(model.parameters(), **lab_optimizer.defaults)
    x, y = setup["x"], setup["y"]
    model.train()
    start = time.perf_counter()
    for _ in range(LOOP_EPOCHS):
        order = torch.randperm(len(x))
        for first in range(0, len(x), cfg.batch_size):
            batch = order[first : first + cfg.batch_size]
            loss = loss_fn(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def loop(repeats: int) -> list[Row]:
    """Samples/s of the lab's epoch and of a bare loop, alternated, per dataset; and their ratio."""
    rows: list[Row] = []
    for dataset in LOOP_DATASETS:
        setup = _setup(dataset)
        _lab_epoch(setup), _bare_epoch(setup)  # warm-up: first-call costs (allocations, lazy imports) untimed
        lab, bare = [], []
        for repeat in range(repeats):  # each goes first in every other pair: no order effect
            if repeat % 2:
                bare.append(_bare_epoch(setup))
            lab.append(_lab_epoch(setup))
            if not repeat % 2:
                bare.append(_bare_epoch(setup))
        samples = len(setup["x"]) * LOOP_EPOCHS
        ratios = [b / a for a, b in zip(lab, bare, strict=True)]  # each pair measured back to back
        rows += [
            (f"{dataset}: lab loop", samples / statistics.median(lab), "samples/s"),
            (f"{dataset}: bare loop", samples / statistics.median(bare), "samples/s"),
            (
                f"{dataset}: lab / bare speed",
                statistics.median(ratios),
                _verdict("loop", statistics.median(ratios)),
            ),
        ]
    return rows


def augment(repeats: int) -> list[Row]:
    """The image CNN's epoch time with each augmentation set over none, alternated."""
    import torch

    from tuninglab.lab import training

    setup = _setup("image")
    cfg = setup["cfg"]
    fill = setup["x"].amin(dim=(0, 2, 3))
    rows: list[Row] = []
    _lab_epoch(setup)  # warm-up
    for name, make in training.AUGMENTERS.items():
        ratios = []
        for repeat in range(repeats):  # each goes first in every other pair: no order effect
            augmenter = make(cfg.augment_strength, fill, torch.Generator().manual_seed(cfg.seed))
            if repeat % 2:
                augmented = _lab_epoch(setup, augmenter)
            plain = _lab_epoch(setup)
            if not repeat % 2:
                augmented = _lab_epoch(setup, augmenter)
            ratios.append(augmented / plain)
        ratio = statistics.median(ratios)
        rows.append((f"image: epoch time, augment {name} / none", ratio, _verdict("augment", ratio)))
    return rows


def fixed(repeats: int) -> list[Row]:
    """In a clone of this commit: `dvc exp run --temp` wall time minus the training its stages report."""
    from tuninglab.studies import collect

    walls, trainings = [], []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "lab"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        _wall(["dvc", "repro", "-q"], cwd=repo)
        for repeat in range(repeats):
            name = f"bench-speed-{repeat}"
            lr = f"{0.1 + 0.01 * repeat:g}"  # a new value each time: the run cache must not answer
            walls.append(_wall(["dvc", "exp", "run", "--temp", "-n", name, "-S", f"train.lr={lr}"], cwd=repo))
            _, experiments = collect.read(cwd=repo)
            record = next(r for r in experiments if r["name"] == name)
            trainings.append(
                sum(
                    entry[dataset]["train_time_s"]
                    for path, entry in record["metrics"].items()
                    if "/train." in path
                    for dataset in entry
                )
            )
    rest = [w - t for w, t in zip(walls, trainings, strict=True)]
    return [
        ("dvc exp run --temp -S train.lr=... wall", statistics.median(walls), "s"),
        ("its summed training time", statistics.median(trainings), "s"),
        (
            "fixed cost (wall - training)",
            statistics.median(rest),
            f"s, {_verdict('fixed_s', statistics.median(rest))}",
        ),
    ]


MEASURES: dict[str, Callable[[int], list[Row]]] = {
    "imports": imports,
    "stages": stages,
    "loop": loop,
    "augment": augment,
    "fixed": fixed,
}


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for and print one line per measurement, with its target where it has one."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: " + ", ".join(PARTS))
    parser.add_argument(
        "--repeats", type=int, default=5, help="repeats per measurement (default 5; fixed: 1 to 3 will do)"
    )
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in parts if part not in MEASURES]
    if unknown or not parts:
        parser.error(
            f"--parts: {','.join(unknown) or 'nothing'} is not allowed; expected some of {', '.join(PARTS)}"
        )
    if args.repeats < 1:
        parser.error(f"--repeats: {args.repeats} is not allowed; expected an integer >= 1")
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; medians of {args.repeats}"
    )
    for part in parts:
        rows = MEASURES[part](args.repeats)
        width = max(len(name) for name, *_ in rows)
        print(f"\n[{part}]")
        for name, value, note in rows:
            print(f"{name:<{width}}  {value:10.3f}  {note}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
