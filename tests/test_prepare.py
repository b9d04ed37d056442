"""Splits are stratified and disjoint; preprocessing is fitted on the training rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuninglab import prepare


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
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(10, 3, n),
            "b": rng.normal(-5, 0.5, n),
            "label": np.array(["x", "y", "z"])[np.arange(n) % 3],
        }
    )


def test_tabular_scaling_uses_training_rows_only():
    frame = iris_like()
    splits = prepare.split_indices(np.arange(90) % 3, 0.2, 0.2, seed=0)
    features, info = prepare.prepare_tabular(frame, splits, normalize=True)
    np.testing.assert_allclose(features[splits["train"]].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(features[splits["train"]].std(axis=0), 1, atol=1e-4)
    # Changing every test row changes nothing about how the training rows are scaled.
    shifted = frame.copy()
    shifted.loc[splits["test"], ["a", "b"]] += 1000
    features2, info2 = prepare.prepare_tabular(shifted, splits, normalize=True)
    np.testing.assert_array_equal(features[splits["train"]], features2[splits["train"]])
    assert info == info2


def test_tabular_without_normalize_keeps_raw_values():
    frame = iris_like()
    splits = prepare.split_indices(np.arange(90) % 3, 0.2, 0.2, seed=0)
    features, info = prepare.prepare_tabular(frame, splits, normalize=False)
    np.testing.assert_allclose(features, frame[["a", "b"]].to_numpy(np.float32))
    assert "scaling" not in info


@pytest.mark.parametrize("normalize", [True, False])
def test_image_pixels_scaled_with_training_statistics(normalize):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 8, 8)).astype(np.uint8)
    splits = prepare.split_indices(np.arange(60) % 2, 0.2, 0.2, seed=0)
    images_with_bright_test = images.copy()
    images_with_bright_test[splits["test"]] = 255
    pixels, info = prepare.prepare_images(images_with_bright_test, splits, normalize)
    assert pixels.shape == (60, 1, 8, 8) and pixels.dtype == np.float32
    if normalize:
        train = pixels[splits["train"]]
        assert abs(train.mean()) < 1e-4 and abs(train.std() - 1) < 1e-4
        assert info["scaling"]["mean"] == pytest.approx(images[splits["train"]].mean(), rel=1e-5)
    else:
        assert pixels.max() == 255


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
    splits = {"train": np.arange(6), "val": np.array([6]), "test": np.array([7])}
    tokens, info, vocabulary = prepare.prepare_texts(texts, splits, vocab_size=100, max_len=5, ngrams=2)
    assert "zebra" not in vocabulary and "stripes" not in vocabulary
    assert vocabulary[:2] == ["<pad>", "<unk>"]
    # Test text: two unseen words and one unseen pair, all the unknown id, then padding.
    assert tokens[7].tolist() == [prepare.UNKNOWN_ID] * 3 + [prepare.PAD_ID] * 2
    # A training text maps to its own words and word pair.
    first = [vocabulary[i] for i in tokens[0] if i != prepare.PAD_ID]
    assert first == ["good", "film", "good film"]
    assert info["vocab_size"] == len(vocabulary)


def test_text_vocabulary_size_and_length_limits():
    texts = pd.Series([" ".join(f"w{i}" for i in range(k, k + 30)) for k in range(20)])
    splits = {"train": np.arange(16), "val": np.array([16, 17]), "test": np.array([18, 19])}
    tokens, info, vocabulary = prepare.prepare_texts(texts, splits, vocab_size=10, max_len=12, ngrams=1)
    assert len(vocabulary) == 12 and tokens.shape == (20, 12)
    assert info["truncated_share"] == 1.0
    assert tokens.max() < len(vocabulary)
