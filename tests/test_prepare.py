"""Splits are stratified and disjoint; preprocessing is fitted on the training rows only.

Before splitting, every class must have enough rows to reach train,
validation and test; the chance rate comes from the training split's majority.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuninglab.lab import datasets, prepare, sources
from tuninglab.lab.kinds import image, tabular, text
from tuninglab.lab.sources import DataSourceError

SPLIT = {"seed": 42, "val_size": 0.15, "test_size": 0.2}
TEXT = datasets.get("text")
BAG = {"vocab_size": 100, "ngrams": 1, "char_ngrams": 0, "char_vocab_size": 100, "weighting": "tfidf"}
TEXT_DATA = {"source": "data/local/text/reviews.csv", "max_len": 8, **BAG}


def test_splits_are_disjoint_cover_all_rows_and_keep_class_shares():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    splits = prepare.split_indices(labels, val_size=0.15, test_size=0.2, seed=1)
    together = np.concatenate(list(splits.values()))
    assert len(together) == len(labels) == len(set(together.tolist()))
    assert {name: len(idx) for name, idx in splits.items()} == {"train": 650, "val": 150, "test": 200}
    for idx in splits.values():
        shares = np.bincount(labels[idx], minlength=3) / len(idx)
        np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.01)


def test_same_seed_same_split_other_seed_other_split():
    labels = np.arange(200) % 4
    first = prepare.split_indices(labels, 0.15, 0.15, seed=7)
    again = prepare.split_indices(labels, 0.15, 0.15, seed=7)
    other = prepare.split_indices(labels, 0.15, 0.15, seed=8)
    for name in prepare.SPLITS:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["test"], other["test"])


def iris_like(n: int = 90) -> pd.DataFrame:
    """Two numeric features (no label: what `read_table` hands the featurizer)."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(10, 3, n), "b": rng.normal(-5, 0.5, n)})


TABULAR_DATA = {"source": "iris", "normalize": True, "min_level_rows": 1}


def test_tabular_scaling_uses_training_rows_only():
    frame = iris_like()
    splits = prepare.split_indices(np.arange(90) % 3, 0.2, 0.2, seed=0)
    features, info = tabular.prepare_tabular(frame, splits, TABULAR_DATA)
    np.testing.assert_allclose(features[splits["train"]].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(features[splits["train"]].std(axis=0), 1, atol=1e-4)
    # Changing every test row changes nothing about how the training rows are scaled.
    shifted = frame.copy()
    shifted.loc[splits["test"], ["a", "b"]] += 1000
    features2, info2 = tabular.prepare_tabular(shifted, splits, TABULAR_DATA)
    np.testing.assert_array_equal(features[splits["train"]], features2[splits["train"]])
    assert info == info2


def test_tabular_without_normalize_keeps_raw_values():
    frame = iris_like()
    splits = prepare.split_indices(np.arange(90) % 3, 0.2, 0.2, seed=0)
    features, info = tabular.prepare_tabular(frame, splits, {**TABULAR_DATA, "normalize": False})
    np.testing.assert_allclose(features, frame[["a", "b"]].to_numpy(np.float32))
    assert info == {
        "preprocessing": {
            "numeric": ["a", "b"],
            "categorical": [],
            "missing_indicators": [],
            "min_level_rows": 1,
            "inputs": 2,
            "levels": {},
            "normalize": False,
        }
    }


def mixed_jobs(n: int = 100) -> pd.DataFrame:
    """Numbers with gaps (one column only outside the training rows' reach), levels with a rare one."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "hour": rng.uniform(0, 24, n),
            "pending": rng.integers(0, 50, n).astype(float),
            "compounds": rng.normal(500, 100, n),
            "day": rng.choice(["Mon", "Tue", "Wed"], n),
        }
    )
    frame.loc[::7, "hour"] = np.nan
    frame.loc[[3, 4], "day"] = "Sat"
    return frame


@pytest.mark.parametrize("normalize", [True, False])
def test_tabular_mixed_columns_get_one_hot_levels_and_missing_indicators(normalize):
    frame = mixed_jobs()
    splits = prepare.split_indices(np.arange(100) % 2, 0.2, 0.2, seed=0)
    train = splits["train"]
    features, entries = tabular.prepare_tabular(
        frame, splits, {**TABULAR_DATA, "normalize": normalize, "min_level_rows": 5}
    )
    info = entries["preprocessing"]
    assert info["numeric"] == ["hour", "pending", "compounds"] and info["categorical"] == ["day"]
    assert info["missing_indicators"] == ["hour"]  # the only numeric column with gaps
    # 3 numbers and the indicator of hour, then Mon/Tue/Wed and one rare column (Sat has fewer than 5 rows).
    assert info["levels"] == {"day": ["Mon", "Tue", "Wed"]} and info["inputs"] == features.shape[1] == 8
    missing = frame["hour"].isna().to_numpy()
    np.testing.assert_array_equal(features[:, 3], missing.astype(np.float32))  # 0 or 1, never scaled
    np.testing.assert_array_equal(features[[3, 4], -1], [1, 1])  # Sat: the rare column
    hour = features[:, 0]
    assert len(set(hour[missing].tolist())) == 1  # every gap takes one value: the training median
    median = np.nanmedian(frame["hour"].to_numpy()[train])
    if normalize:
        known = frame["hour"].to_numpy()[train]
        known = known[~np.isnan(known)]
        assert hour[missing][0] == pytest.approx((median - known.mean()) / known.std(), rel=1e-5)
        np.testing.assert_allclose(features[train, 1:3].mean(axis=0), 0, atol=1e-5)
    else:
        assert hour[missing][0] == pytest.approx(median, rel=1e-6)
        np.testing.assert_allclose(features[:, 1], frame["pending"].to_numpy(np.float32))


def test_the_missing_indicator_is_fitted_on_the_training_rows_only():
    """A column whose gaps lie outside the training rows gets no indicator; its gaps take the median."""
    frame = mixed_jobs()
    splits = prepare.split_indices(np.arange(100) % 2, 0.2, 0.2, seed=0)
    frame["hour"] = np.arange(100, dtype=float)
    frame.loc[splits["test"][:3], "hour"] = np.nan
    features, entries = tabular.prepare_tabular(frame, splits, TABULAR_DATA)
    assert entries["preprocessing"]["missing_indicators"] == []
    assert not np.isnan(features).any()


@pytest.mark.parametrize("normalize", [True, False])
def test_image_pixels_scaled_with_training_statistics(normalize):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 1, 8, 8)).astype(np.uint8)
    splits = prepare.split_indices(np.arange(60) % 2, 0.2, 0.2, seed=0)
    images_with_bright_test = images.copy()
    images_with_bright_test[splits["test"]] = 255
    pixels, entries = image.prepare_images(images_with_bright_test, splits, {"normalize": normalize})
    info = entries["preprocessing"]
    assert pixels.shape == (60, 1, 8, 8) and pixels.dtype == np.float32
    if normalize:
        train = pixels[splits["train"]]
        assert abs(train.mean()) < 1e-4 and abs(train.std() - 1) < 1e-4
        assert info["scaling"]["mean"] == pytest.approx([images[splits["train"]].mean()], rel=1e-5)
    else:
        assert pixels.max() == 255


def test_colour_images_are_scaled_per_channel():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 3, 8, 8)).astype(np.uint8)
    images[:, 1] //= 4  # a dark green channel
    images[:, 2] = 200  # a constant blue level: nothing to scale, it becomes 0 (std taken as 1)
    splits = prepare.split_indices(np.arange(60) % 2, 0.2, 0.2, seed=0)
    pixels, entries = image.prepare_images(images, splits, {"normalize": True})
    train = pixels[splits["train"]]
    np.testing.assert_allclose(train.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=(0, 2, 3)), [1, 1, 0], atol=1e-4)
    scaling = entries["preprocessing"]["scaling"]
    expected = images[splits["train"]].astype(np.float64).mean(axis=(0, 2, 3))
    assert scaling["mean"] == pytest.approx(expected.tolist(), rel=1e-5) and scaling["std"][2] == 1.0


IMAGE = datasets.get("image")


def write_image_raw(folder: Path, train_per_class: list[int], test_per_class: list[int]) -> np.ndarray:
    """An image raw file with an official test set: the class counts of each part, training rows first."""
    labels = np.concatenate(
        [np.repeat(np.arange(len(counts)), counts) for counts in (train_per_class, test_per_class)]
    )
    images = np.zeros((len(labels), 1, 4, 4), dtype=np.uint8)
    images[:, 0, 0, 0] = labels * 20
    test = np.arange(len(labels)) >= sum(train_per_class)
    image.write_images(folder / IMAGE.raw_file, images, labels, ["a", "b", "c"][: len(train_per_class)], test)
    return test


def test_a_sources_own_test_set_stays_the_test_split_and_validation_comes_from_training(tmp_path):
    test = write_image_raw(tmp_path, [100, 60, 40], [10, 10, 10])
    arrays, meta = prepare.prepare(IMAGE, tmp_path, SPLIT, {"source": "cifar10", "normalize": False})
    assert meta["official_test"] is True
    assert meta["splits"]["test"] == {"rows": 30, "classes": [10, 10, 10]}
    assert meta["splits"]["val"] == {"rows": 30, "classes": [15, 9, 6]}  # 15 % of each class's training rows
    assert meta["splits"]["train"] == {"rows": 170, "classes": [85, 51, 34]}
    np.testing.assert_array_equal(arrays["y_test"], np.repeat([0, 1, 2], 10))
    assert int(test.sum()) == len(arrays["x_test"])
    again, _ = prepare.prepare(
        IMAGE, tmp_path, {**SPLIT, "test_size": 0.4}, {"source": "c", "normalize": False}
    )
    np.testing.assert_array_equal(again["y_val"], arrays["y_val"])  # split.test_size is not used


def test_a_class_missing_from_the_sources_test_set_is_refused(tmp_path):
    write_image_raw(tmp_path, [20, 20, 20], [5, 5, 0])
    with pytest.raises(DataSourceError) as err:
        prepare.prepare(IMAGE, tmp_path, SPLIT, {"source": "usps", "normalize": True}, "digits")
    assert str(err.value) == "digits.data.source: class 'c' of usps has no row in its test set"


def test_a_class_with_too_few_training_rows_for_validation_is_refused(tmp_path):
    write_image_raw(tmp_path, [100, 100, 1], [5, 5, 5])
    with pytest.raises(DataSourceError) as err:
        prepare.prepare(IMAGE, tmp_path, SPLIT, {"source": "usps", "normalize": True})
    assert str(err.value).startswith(
        "image.data.source: class 'c' of usps has 1 training rows, too few for split.val_size 0.15 "
        "(a share of the training rows here): validation and training need one row each"
    )


def test_text_vocabulary_comes_from_training_texts_only():
    texts = pd.Series(
        [
            "good film",
            "great good fun",
            "bad plot",
            "awful bad acting",
            "good fun",
            "bad awful",
            "zebra crossing",
            "zebra stripes",
        ]
    )
    labels = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    splits = {"train": np.arange(6), "val": np.array([6]), "test": np.array([7])}
    data = {**BAG, "ngrams": 2, "max_len": 5}
    bags, entries = text.prepare_texts(texts, splits, data, labels=labels)
    info, vocabulary = entries["preprocessing"], entries["vocabulary"]
    assert "zebra" not in vocabulary and "stripes" not in vocabulary
    assert vocabulary[0] == "<pad>" and info["vocab_size"] == len(vocabulary)
    assert bags.shape == (8, 2, 5)
    # The test text has only unseen n-grams: an empty bag.
    assert not bags[7].any()
    # A training text is its own words and word pair, weights of unit norm.
    ids = bags[0, 0][bags[0, 0] != text.PAD_ID].astype(int)
    assert sorted(vocabulary[i] for i in ids) == ["film", "good", "good film"]
    assert np.linalg.norm(bags[0, 1]) == pytest.approx(1.0)


def test_nb_weighting_favours_the_n_grams_that_tell_classes_apart():
    texts = pd.Series(["good plot", "good cast", "bad plot", "bad cast", "good plot", "bad cast"])
    labels = np.array([0, 0, 1, 1, 0, 1])
    splits = {"train": np.arange(4), "val": np.array([4]), "test": np.array([5])}
    bags, entries = text.prepare_texts(
        texts, splits, {**BAG, "weighting": "nb_tfidf", "max_len": 4}, labels=labels
    )
    weights = dict(zip(entries["vocabulary"], np.zeros(len(entries["vocabulary"])), strict=True))
    for token, weight in zip(bags[0, 0].astype(int), bags[0, 1], strict=True):
        weights[entries["vocabulary"][token]] = weight
    assert weights["good"] > 0 and weights["plot"] == 0  # "plot" is as common in both classes: ratio 0


def test_character_n_grams_join_the_word_n_grams():
    texts = pd.Series(["superb", "superbly", "dull", "dully"])
    splits = {"train": np.array([0, 2]), "val": np.array([1]), "test": np.array([3])}
    data = {**BAG, "char_ngrams": 3, "max_len": 50}
    bags, entries = text.prepare_texts(texts, splits, data, labels=np.array([0, 0, 1, 1]))
    vocabulary = entries["vocabulary"]
    assert "char:sup" in vocabulary and "superbly" not in vocabulary
    # The unseen word still shares character n-grams with a training word.
    assert {vocabulary[i] for i in bags[1, 0].astype(int) if i} >= {"char:sup", "char:erb"}
    assert entries["preprocessing"]["char_ngrams"] == 3


def test_max_len_keeps_the_heaviest_n_grams_and_auto_takes_the_95th_percentile():
    texts = pd.Series([" ".join(f"w{i}" for i in range(k)) for k in range(1, 21)])
    labels = np.arange(20) % 2
    splits = {"train": np.arange(16), "val": np.array([16, 17]), "test": np.array([18, 19])}
    bags, entries = text.prepare_texts(texts, splits, {**BAG, "max_len": 12}, labels=labels)
    assert bags.shape == (20, 2, 12) and entries["preprocessing"]["truncated_share"] == 0.4
    auto, entries = text.prepare_texts(texts, splits, {**BAG, "max_len": "auto"}, labels=labels)
    # The training texts have 1 to 16 words: numpy's 95th percentile of them is 15.25, rounded up.
    assert entries["preprocessing"]["max_len"] == 16 and entries["preprocessing"]["max_len_setting"] == "auto"
    assert auto.shape == (20, 2, 16)
    # A longer text keeps its heaviest n-grams: the rarest in training (highest idf) here.
    kept = {entries["vocabulary"][i] for i in bags[19, 0].astype(int)}
    assert "w15" in kept and "w0" not in kept


def test_review_file_with_a_split_column_keeps_its_own_test_rows(tmp_path):
    rows = [
        (f"{label} review {i}", label, "test" if i % 4 == 0 else "train")
        for label in ("neg", "pos")
        for i in range(40)
    ]
    pd.DataFrame(rows, columns=["text", "label", "split"]).to_csv(tmp_path / "reviews.csv", index=False)
    arrays, meta = prepare.prepare(TEXT, tmp_path, SPLIT, {**TEXT_DATA, "source": "imdb"})
    assert meta["official_test"] is True
    assert meta["splits"]["test"]["rows"] == 20 and meta["splits"]["test"]["classes"] == [10, 10]
    assert abs(meta["splits"]["val"]["classes"][0] - meta["splits"]["val"]["classes"][1]) <= 1  # stratified
    assert len(arrays["y_train"]) + len(arrays["y_val"]) == 60


def write_reviews(raw_dir: Path, counts: dict[str, int]) -> None:
    """A raw text file as the download stage writes it, with `counts[label]` rows per label."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    rows = [(f"{label} review number {i}", label) for label, n in counts.items() for i in range(n)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(raw_dir / "reviews.csv", index=False)


def test_chance_rate_is_the_training_majority_scored_on_test():
    # Class 0 leads the training labels, class 1 the test labels: predicting 0 scores 1 in 6.
    y_train = np.array([0, 0, 0, 1, 1])
    y_test = np.array([1, 1, 1, 1, 0, 2])
    assert prepare.chance_accuracy(y_train, y_test) == 0.166667


def test_prepare_records_the_chance_rate_of_an_imbalanced_dataset(tmp_path):
    write_reviews(tmp_path, {"fresh": 45, "rotten": 15, "meh": 10})
    arrays, meta = prepare.prepare(TEXT, tmp_path, SPLIT, TEXT_DATA)
    fresh = meta["classes"].index("fresh")
    assert np.bincount(arrays["y_train"]).argmax() == fresh
    expected = (arrays["y_test"] == fresh).sum() / len(arrays["y_test"])
    assert meta["chance_accuracy"] == round(expected, 6) == 0.642857  # 9 of the 14 test rows


def test_text_labels_and_reviews_that_read_like_missing_values_stay_text(tmp_path):
    write_reviews(tmp_path, {"NA": 10, "None": 10})
    _, meta = prepare.prepare(TEXT, tmp_path, SPLIT, TEXT_DATA)
    assert meta["classes"] == ["NA", "None"]
    assert "na" in meta["vocabulary"]


def test_a_class_too_small_for_the_split_is_refused_before_splitting(tmp_path):
    write_reviews(tmp_path, {"fresh": 100, "rotten": 100, "meh": 7})
    with pytest.raises(DataSourceError) as err:
        prepare.prepare(TEXT, tmp_path, SPLIT, TEXT_DATA)
    assert str(err.value) == (
        "text.data.source: class 'meh' of data/local/text/reviews.csv has 7 rows, too few for "
        "split.val_size 0.15 and split.test_size 0.2: a class needs at least 8 rows so that train, "
        "validation and test are sure to get one each (add rows of that class, remove the class, "
        "or change the split shares)"
    )
    write_reviews(tmp_path, {"fresh": 100, "rotten": 100, "meh": 8})
    _, meta = prepare.prepare(TEXT, tmp_path, SPLIT, TEXT_DATA)
    assert all(min(part["classes"]) >= 1 for part in meta["splits"].values())


def test_a_single_row_class_gets_the_check_not_scikit_learns_error(tmp_path):
    write_reviews(tmp_path, {"fresh": 30, "rotten": 1})
    with pytest.raises(DataSourceError, match=r"class 'rotten' of .* has 1 rows, .* at least \d+ rows"):
        prepare.prepare(TEXT, tmp_path, SPLIT, TEXT_DATA)


def test_bundled_data_is_checked_against_the_split_too(tmp_path):
    """Iris has 50 rows a class: a 1 % test split (2 rows) cannot hold its 3 classes."""

    sources.fetch(datasets.get("tabular"), "iris", tmp_path)
    with pytest.raises(DataSourceError, match=r"tabular\.data\.source: class 'setosa' of iris has 50 rows"):
        prepare.prepare(
            datasets.get("tabular"),
            tmp_path,
            {**SPLIT, "test_size": 0.01},
            TABULAR_DATA,
        )


SHARES = [(0.15, 0.2), (0.1, 0.1), (0.3, 0.3), (0.05, 0.3), (0.5, 0.3), (0.01, 0.01)]


def empty_part_or_refused(labels: np.ndarray, val_size: float, test_size: float) -> bool:
    """Whether the split leaves some class out of a part, or scikit-learn refuses to make it."""
    try:
        parts = prepare.split_indices(labels, val_size, test_size, seed=0).values()
    except ValueError as err:
        assert "should be greater or equal to the number of classes" in str(err)
        return True
    return any(np.bincount(labels[idx], minlength=labels.max() + 1).min() == 0 for idx in parts)


@pytest.mark.parametrize(("val_size", "test_size"), SHARES)
def test_min_class_rows_is_enough_and_at_most_one_row_more_than_needed(val_size, test_size):
    """At the minimum no split leaves the class out of a part; two rows fewer, some split does.

    (The minimum is a guarantee whatever the rounding, so it may ask one row
    more than the worst actual split needs.) Many equal classes are the hard
    case: each part has few rows for the number of classes.
    """
    for classes in (2, 3, 7, 12, 25, 40, 120):
        others = prepare.min_class_rows(10_000, val_size, test_size) + 3
        needed = prepare.min_class_rows((classes - 1) * others, val_size, test_size)
        labels = np.repeat(np.arange(classes), [needed] + [others] * (classes - 1))
        for seed in range(5):
            for idx in prepare.split_indices(labels, val_size, test_size, seed).values():
                assert np.bincount(labels[idx], minlength=classes).min() >= 1
        equal = np.repeat(np.arange(classes), needed)
        assert not empty_part_or_refused(equal, val_size, test_size)
    short = prepare.min_class_rows(10_000, val_size, test_size) - 2
    assert any(
        empty_part_or_refused(np.repeat(np.arange(classes), short), val_size, test_size)
        for classes in range(2, 250)
    )


def test_default_split_needs_eight_rows_a_class():
    assert prepare.min_class_rows(1_000, 0.15, 0.2) == 8
    assert all(prepare.min_class_rows(other, 0.15, 0.2) <= 8 for other in range(3_000))
