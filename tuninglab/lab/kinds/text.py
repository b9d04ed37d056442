"""The text data type: reviews as weighted bags of word and character n-grams, and a class label.

Sources: Rotten Tomatoes and IMDb (`sources`), or a user's CSV of text,label
rows in data/local/text/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tuninglab.lab import prepare, sources
from tuninglab.lab.datasets import DatasetSpec, LocalCsv, register
from tuninglab.lab.rules import auto_or_int_at_least, choice, int_at_least, int_in

SHIPPED_TEXT_ROWS = {"rotten_tomatoes": 12_808, "imdb": 50_000}
# Distinct word and character n-grams of the 95th-percentile review of each shipped text source, with the
# default n-gram settings, rounded up well: what `max_len: auto` sizes the memory check by. Rotten Tomatoes
# measured 554; IMDb's reviews are about 10 times as long (an estimate, not measured here).
SHIPPED_TEXT_BAG = {"rotten_tomatoes": 1_000, "imdb": 6_000}
MAX_VOCABULARY = 2**24 - 2  # n-gram ids are stored as float32 (`prepare.pack_bags`): exact below 2**24


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
        sources={"rotten_tomatoes": sources.fetch_rotten_tomatoes, "imdb": sources.fetch_imdb},
        raw_file="reviews.csv",
        read_raw=prepare.read_reviews,
        featurize=prepare.prepare_texts,
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
        local_csv=LocalCsv("text,label", sources.fetch_csv_reviews),
        official_test=prepare.read_review_test,
        featurize_labels=True,
        size_param="max_len",
        empty_row="text or label",
    )
)
