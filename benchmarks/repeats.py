"""How many repeats each dataset needs, and what a repeat costs.

Part 1 (default): trains each dataset's baseline configuration `--repeats`
times in this process (seeds `train.seed`, `+1`, ..., as the train stage
does), on the prepared data of `dvc repro`, and prints the spread of its
primary test metric across seeds, the cost of one repeat (wall and CPU
seconds of training), and for each N the expected half-width of the 95 %
t-interval, t(N-1) * sd / sqrt(N), with the smallest N that meets the target:
1 point (tabular: 2 points).

Part 2 (`--dvc`): the fixed cost that repeats save. Runs the train stages
with `dvc exp run -f train` twice, with one repeat everywhere and with the
defaults, and prints the wall time of each next to the summed training time
of every dataset's repeats: each extra repeat should cost at most 1.1x its own
training time. Run it in a clean checkout after `dvc repro`; it adds two
experiments and leaves the defaults' outputs in the workspace.

Usage: python -m benchmarks.repeats [--repeats 6] [--datasets tabular image] [--dvc]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import time
from pathlib import Path

from scipy import stats

from tuninglab import schema
from tuninglab.lab import params, repeats, training
from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.files import load_arrays

TARGET = {"tabular": 0.02}  # half-width targets, a fraction of the primary metric
DEFAULT_TARGET = 0.01


def half_width(sd: float, n: int) -> float:
    """The expected half-width of a 95 % t-interval of the mean of `n` runs with spread `sd`."""
    return stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def spread(dataset: str, n: int) -> None:
    """Train `dataset`'s baseline `n` times and print its spread, cost and the repeats it needs."""
    p = params.load()
    cfg = dataclasses.replace(params.train_config(p, dataset), repeats=n, threads=1)
    spec = params.dataset_spec(p, dataset)
    arrays, meta = load_arrays(Path("data/prepared") / dataset)
    device = training.resolve_device(cfg.device)
    cpu = time.process_time()
    _, done = repeats.run(spec.name, spec.task, arrays, meta, cfg, device)
    cpu = (time.process_time() - cpu) / n
    scores = [r.test[spec.task.primary_metric] for r in done]
    wall = sum(r.summary["train_time_s"] for r in done) / n
    mean = sum(scores) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
    target = TARGET.get(dataset, DEFAULT_TARGET)
    widths = {k: half_width(sd, k) for k in range(2, 11)}
    enough = next((k for k, w in widths.items() if w <= target), None)
    print(f"\n{dataset}: {spec.task.primary_metric} over seeds {cfg.seed}..{cfg.seed + n - 1}")
    print(f"  values {', '.join(f'{s:.4f}' for s in scores)}; mean {mean:.4f}, sd {sd * 100:.2f} points")
    print(f"  one repeat: {wall:.1f} s wall, {cpu:.1f} s CPU of training")
    print("  N  expected 95 % half-width (points)  training time (s)")
    for k, w in widths.items():
        print(f"  {k:>2}  {w * 100:>6.2f}{'  <- target met' if k == enough else '':<16}  {k * wall:>8.1f}")
    print(f"  target {target * 100:.0f} point(s): {'N = ' + str(enough) if enough else 'not met by N <= 10'}")


def dvc_cost() -> None:
    """`dvc exp run` of the train stages with one repeat and with the defaults: wall against training time.

    Both runs set every `repeats` param (the shared one and each dataset's override) and force the
    train stages (`-f train`), so that DVC's run cache cannot skip one; data is not prepared again.
    """
    defaults = params.load()
    keys = ["train.repeats"] + [
        f"{d}.train.repeats" for d in dataset_names() if "repeats" in defaults[d]["train"]
    ]
    measured = {}
    for label, value in (("repeats=1", lambda _: 1), ("defaults", lambda key: _setting(defaults, key))):
        settings = [arg for key in keys for arg in ("-S", f"{key}={value(key)}")]
        started = time.perf_counter()
        subprocess.run(["dvc", "exp", "run", "-f", "train", *settings], check=True, capture_output=True)
        wall = time.perf_counter() - started
        trained = sum(
            json.loads(schema.metrics_path(d, "train").read_text())[d]["train_time_s"]
            for d in dataset_names()
        )
        counts = {
            d: json.loads(schema.metrics_path(d, "test").read_text())[d][schema.REPEATS]
            for d in dataset_names()
        }
        measured[label] = (wall, trained)
        print(f"{label:>10}: dvc exp run {wall:.1f} s, training {trained:.1f} s, repeats {counts}")
    (w1, t1), (wn, tn) = measured["repeats=1"], measured["defaults"]
    print(f"fixed cost (wall - training): {w1 - t1:.1f} s with one repeat, {wn - tn:.1f} s with the defaults")
    print(f"extra wall time per extra training second: {(wn - w1) / (tn - t1):.2f}x (target <= 1.1x)")


def _setting(tree: dict, key: str) -> object:
    """The value of a dotted params key (`image.train.repeats`)."""
    for part in key.split("."):
        tree = tree[part]
    return tree


def main() -> None:
    """Parse the options and run the parts asked for."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=6, help="seeds per dataset (at least 3)")
    parser.add_argument("--datasets", nargs="+", default=dataset_names(), choices=dataset_names())
    parser.add_argument(
        "--dvc", action="store_true", help="measure dvc exp run with 1 and the default repeats"
    )
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: at least 3 are needed to estimate a spread")
    if args.dvc:
        dvc_cost()
        return
    for dataset in args.datasets:
        spread(dataset, args.repeats)


if __name__ == "__main__":
    main()
