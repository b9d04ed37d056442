"""Does pinning torch's CPU kernels make training the same on every x86 CPU, and what does it cost?

`python -m benchmarks.cpu_kernels` (after `make run`) trains the image and text
baselines from the prepared data in `data/prepared/`, each in a fresh process
in a temporary folder, with torch's kernels as this CPU picks them and pinned
before torch loads:

- `native`: nothing set (AVX-512 where the CPU has it);
- `avx2`: `ATEN_CPU_CAPABILITY=avx2`, `MKL_CBWR=AVX2` (MKL's conditional
  numerical reproducibility) and `ONEDNN_MAX_CPU_ISA=AVX2`: what any x86 CPU
  with AVX2 would run;
- `default`: `ATEN_CPU_CAPABILITY=default` (no vector kernels of ATen's own).

It prints each setting's test accuracy, best epoch, seconds per epoch and the
ratio to `native`, and whether two runs of a setting are bit-identical. One
machine can only show that a setting repeats itself and what it costs; whether
`avx2` gives the same bits on another CPU needs another CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default"},
}


def train(dataset: str, env: dict[str, str]) -> dict[str, float | str]:
    """Train `dataset` once with `env` added; its test metric, best epoch, time per epoch and kernels."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
        command = [sys.executable, "-m", "stages.train", dataset, str(ROOT / "data/prepared" / dataset)]
        environment = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        subprocess.run(
            [*command, str(work / "model")], cwd=work, env=environment, check=True, capture_output=True
        )
        test = json.loads((work / "metrics" / dataset / "test.json").read_text())[dataset]
        trained = json.loads((work / "metrics" / dataset / "train.json").read_text())[dataset]
        with (work / "plots" / dataset / "history.csv").open() as rows:
            curve = [row[:-1] for row in csv.reader(rows)]  # without the epoch's wall time
    return {
        "accuracy": test["test_accuracy"],
        "best_epoch": trained["best_epoch"],
        "epoch_s": trained["train_time_s"] / trained["epochs_run"],
        "kernels": trained["cpu_capability"],
        "curve": curve,
    }


def main() -> None:
    """Train each dataset under each setting (twice, alternating), and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="image,text")
    for dataset in parser.parse_args().datasets.split(","):
        runs = {name: [] for name in SETTINGS}
        for _ in range(2):
            for name, env in SETTINGS.items():
                runs[name].append(train(dataset, env))
        native = sum(run["epoch_s"] for run in runs["native"]) / 2
        print(f"{dataset}:")
        for name, (first, second) in runs.items():
            epoch_s = (first["epoch_s"] + second["epoch_s"]) / 2
            print(
                f"  {name:8} kernels {first['kernels']:8} test accuracy {first['accuracy']:.4f}  "
                f"best epoch {first['best_epoch']:>2}  {epoch_s:.3f} s/epoch "
                f"({epoch_s / native:.2f}x native)  repeats bit for bit: {first['curve'] == second['curve']}"
            )


if __name__ == "__main__":
    main()
