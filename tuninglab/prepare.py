"""Split raw data into train/validation/test and turn it into model-ready arrays.

Every preprocessing step is fitted on the training split only (feature
scaling, pixel statistics, the text vocabulary), then applied to all three
splits, so no validation or test row influences training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from tuninglab.sources import RAW_FILES

SPLITS = ("train", "val", "test")
PAD_ID, UNKNOWN_ID = 0, 1  # token ids reserved before the vocabulary's own
FIRST_TOKEN_ID = 2


def split_indices(labels: np.ndarray, val_size: float, test_size: float, seed: int) -> dict[str, np.ndarray]:
    """Stratified train/validation/test row indices, the same for the same seed.

    `val_size` and `test_size` are shares of all rows.
    """
    rows = np.arange(len(labels))
    rest, test = train_test_split(rows, test_size=test_size, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_size / (1 - test_size), stratify=labels[rest], random_state=seed
    )
    return {"train": train, "val": val, "test": test}


def encode_labels(labels: pd.Series | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Class ids 0..C-1 in sorted order of the class names, and the names."""
    names, ids = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return ids.astype(np.int64), [str(n) for n in names]


def _standardize(features: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    scaler = StandardScaler().fit(features[train])
    stats = {"mean": scaler.mean_.round(6).tolist(), "std": scaler.scale_.round(6).tolist()}
    return scaler.transform(features).astype(np.float32), stats


def prepare_tabular(
    frame: pd.DataFrame, splits: dict[str, np.ndarray], normalize: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Feature matrix, standardized with the training rows' statistics when `normalize`."""
    features = frame.drop(columns="label").to_numpy(np.float32)
    info: dict[str, Any] = {"features": [c for c in frame.columns if c != "label"], "normalize": normalize}
    if normalize:
        features, info["scaling"] = _standardize(features, splits["train"])
    return features, info


def prepare_images(
    images: np.ndarray, splits: dict[str, np.ndarray], normalize: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Images as float32 (N, 1, H, W).

    With `normalize`, pixels are standardized with the training images' mean and
    standard deviation; without it they keep their raw 0-255 grey levels.
    """
    pixels = images.astype(np.float32)[:, None, :, :]
    info: dict[str, Any] = {"normalize": normalize}
    if normalize:
        train = pixels[splits["train"]]
        mean, std = float(train.mean()), float(train.std())
        pixels = (pixels - mean) / std
        info["scaling"] = {"mean": round(mean, 6), "std": round(std, 6)}
    return pixels, info


def fit_vocabulary(texts: list[str], vocab_size: int, ngrams: int) -> CountVectorizer:
    """Keep the `vocab_size` most frequent word n-grams of the training texts."""
    return CountVectorizer(ngram_range=(1, ngrams), max_features=vocab_size).fit(texts)


def encode_texts(texts: list[str], vectorizer: CountVectorizer, max_len: int) -> np.ndarray:
    """Token ids per text, cut or padded to `max_len`; unseen n-grams share one id."""
    analyze = vectorizer.build_analyzer()
    vocabulary = vectorizer.vocabulary_
    out = np.full((len(texts), max_len), PAD_ID, dtype=np.int64)
    for row, text in enumerate(texts):
        ids = [
            vocabulary[token] + FIRST_TOKEN_ID if token in vocabulary else UNKNOWN_ID
            for token in analyze(text)[:max_len]
        ]
        out[row, : len(ids)] = ids
    return out


def prepare_texts(
    texts: pd.Series, splits: dict[str, np.ndarray], vocab_size: int, max_len: int, ngrams: int
) -> tuple[np.ndarray, dict[str, Any], list[str]]:
    """Token id matrix, with a vocabulary fitted on the training texts only."""
    texts = texts.astype(str).tolist()
    vectorizer = fit_vocabulary([texts[i] for i in splits["train"]], vocab_size, ngrams)
    tokens = encode_texts(texts, vectorizer, max_len)
    vocabulary = ["<pad>", "<unk>", *vectorizer.get_feature_names_out().tolist()]
    lengths = (tokens != PAD_ID).sum(axis=1)
    info = {
        "vocab_size": len(vocabulary),
        "max_len": max_len,
        "ngrams": ngrams,
        "truncated_share": round(float((lengths == max_len).mean()), 4),
        "unknown_share": round(float((tokens == UNKNOWN_ID).sum() / max(lengths.sum(), 1)), 4),
    }
    return tokens, info, vocabulary


def prepare(
    dataset: str, raw_dir: Path, split: dict[str, Any], data: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split and preprocess one dataset's raw file.

    Returns:
        The arrays `x_<split>` and `y_<split>` for train, val and test, and a
        metadata record (class names, input shape, preprocessing, split sizes).
        Text datasets also carry their vocabulary under `meta["vocabulary"]`.
    """
    raw = raw_dir / RAW_FILES[dataset]
    if dataset == "image":
        with np.load(raw) as archive:
            images, labels = archive["images"], archive["labels"]
    else:
        frame = pd.read_csv(raw)
        labels = frame["label"].to_numpy()
    y, classes = encode_labels(labels)
    splits = split_indices(y, split["val_size"], split["test_size"], split["seed"])

    meta: dict[str, Any] = {"dataset": dataset, "classes": classes}
    if dataset == "tabular":
        x, meta["preprocessing"] = prepare_tabular(frame, splits, data["normalize"])
    elif dataset == "image":
        x, meta["preprocessing"] = prepare_images(images, splits, data["normalize"])
    else:
        x, meta["preprocessing"], meta["vocabulary"] = prepare_texts(
            frame["text"], splits, data["vocab_size"], data["max_len"], data["ngrams"]
        )
    meta["input_shape"] = list(x.shape[1:])
    meta["splits"] = {
        name: {"rows": len(idx), "classes": np.bincount(y[idx], minlength=len(classes)).tolist()}
        for name, idx in splits.items()
    }
    arrays = {}
    for name, idx in splits.items():
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[idx], y[idx]
    return arrays, meta
