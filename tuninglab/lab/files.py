"""Small helpers for writing stage outputs so that none is ever left half-written.

`atomic_dir` replaces a whole folder: only for a DVC stage's own output
folder, which DVC deletes before the stage runs anyway. A folder a user names
(the report's `--out`) goes through `tuninglab.owned.owned_dir`, which
replaces only what the lab wrote there.

`write_table` writes a CSV with the standard library, byte for byte as
pandas' `to_csv(index=False)` would: the train stage writes its plots without
importing pandas, which costs a second of start-up. `read_whole_csv` reads a
CSV the lab wrote back, refusing one that was cut short or corrupted since.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# A table as columns: name -> one value per row (a numpy array or a list), every column of one length.
Columns = Mapping[str, "np.ndarray | Sequence[Any]"]


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file, then a rename), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically, with non-finite floats as null."""
    write_text(path, json.dumps(_finite_or_none(data), indent=2) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a table as CSV without its index, atomically."""
    write_text(path, frame.to_csv(index=False))


def _csv_field(value: Any) -> Any:
    """A cell as pandas writes it: NaN and None empty, a float as its shortest round-trip repr."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else value


def table_text(columns: Columns) -> str:
    """The CSV text of a table given as columns: a header line, then one line per row.

    Fields are quoted only where needed and lines end in a newline, as with
    pandas' `DataFrame(columns).to_csv(index=False)`.
    """
    lists = [np.asarray(values).tolist() for values in columns.values()]
    if len({len(values) for values in lists}) > 1:
        raise ValueError(f"columns of different lengths: {dict(zip(columns, map(len, lists), strict=True))}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_field(v) for v in row] for row in zip(*lists, strict=True))
    return out.getvalue()


def write_table(path: Path, columns: Columns) -> None:
    """Write a table given as columns (`table_text`) to `path` as CSV, atomically."""
    write_text(path, table_text(columns))


class DamagedFileError(ValueError):
    """A CSV file the lab wrote that is no longer whole: cut short, corrupted or edited out of shape."""


def _damage(raw: bytes) -> str:
    """What is wrong with the bytes of a CSV file the lab wrote, naming the line; "" when they are whole.

    The lab's CSV files are UTF-8, end with a line end and have as many fields
    in every record as in the header.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        return f"byte 0x{raw[err.start]:02x} on line {line} is not UTF-8 text"
    if not text.endswith("\n"):
        last = text.count("\n") + 1
        return f"its last line (line {last}) stops without a line end: the file was cut short"
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        header = next(reader)
        for record in reader:
            if len(record) != len(header):
                return f"line {reader.line_num} has {len(record)} fields where the header has {len(header)}"
    except csv.Error as err:
        return f"line {reader.line_num} cannot be parsed ({err})"
    return ""


def read_whole_csv(path: Path, **read: Any) -> pd.DataFrame:
    """Read a CSV file the lab wrote with pandas' `read` options, once it is checked whole.

    pandas reads a record cut short as one with empty cells; this refuses it.
    An empty file raises pandas' `EmptyDataError`, as `pandas.read_csv` does.

    Raises:
        DamagedFileError: "<path> is damaged: <what, on which line>", when the
            file is not UTF-8, its last line has no line end, a record's field
            count differs from the header's, or pandas cannot parse it.
    """
    import pandas as pd

    raw = Path(path).read_bytes()
    damage = _damage(raw) if raw else ""
    if not damage:
        try:
            return pd.read_csv(io.BytesIO(raw), **read)
        except pd.errors.ParserError as err:
            damage = str(err).strip().splitlines()[-1]
    raise DamagedFileError(f"{path} is damaged: {damage}")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `path`, all of it, only if the block succeeds.

    For a DVC stage's declared output folder only (`data/raw/<d>`, `models/<d>`):
    whatever `path` held is deleted. A folder a user names goes through `owned_dir`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_arrays(out_dir: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write named arrays to `data.npz` and their metadata to `meta.json`."""
    np.savez_compressed(out_dir / "data.npz", **arrays)
    write_json(out_dir / "meta.json", meta)


def load_arrays(in_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the arrays and metadata written by `save_arrays`."""
    with np.load(in_dir / "data.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    return arrays, read_json(in_dir / "meta.json")
