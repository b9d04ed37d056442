"""Prepared data is the same bytes on every CPU, and every run records how it was computed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer

from tests.conftest import ROOT
from tuninglab.lab import compute
from tuninglab.lab.datasets import dataset_names
from tuninglab.lab.kinds import image, text


def dispatched_features() -> list[str]:
    """The SIMD targets above numpy's baseline that it dispatches to on this CPU."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [target for target in __cpu_dispatch__ if __cpu_features__.get(target)]


def stage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a stage (or `python -c`) from the repository root with this environment's Python."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", dataset_names())
def test_prepare_writes_the_same_bytes_whatever_numpy_dispatches_to(dataset, tmp_path):
    features = dispatched_features()
    if not features:
        pytest.skip("numpy dispatches to no SIMD target above its baseline on this CPU")
    disabled = {"NPY_DISABLE_CPU_FEATURES": " ".join(features)}
    # The variable takes effect: numpy then runs its baseline kernels only.
    probe = "from tuninglab.lab.compute import numpy_simd; print(numpy_simd())"
    assert stage("-c", probe, env=disabled).stdout.strip() == "baseline"
    raw = tmp_path / "raw"
    stage("-m", "stages.download", dataset, str(raw))
    stage("-m", "stages.prepare", dataset, str(raw), str(tmp_path / "native"))
    stage("-m", "stages.prepare", dataset, str(raw), str(tmp_path / "baseline"), env=disabled)
    native, baseline = files(tmp_path / "native"), files(tmp_path / "baseline")
    assert native.keys() == baseline.keys()
    assert [name for name in native if native[name] != baseline[name]] == []


def test_the_vocabulary_cut_breaks_ties_alphabetically():
    # "b", "c" and "d" are each seen twice, "a" three times: a cut at 2 keeps "a", then "b" of the tie.
    texts = ["d c b a", "a b", "c d a"]
    assert text.top_ngrams(CountVectorizer(token_pattern=r"\w"), texts, 2) == ["a", "b"]
    assert text.top_ngrams(CountVectorizer(token_pattern=r"\w"), texts[::-1], 2) == ["a", "b"]


def test_exact_log_is_math_log_of_each_value():
    values = np.array([[1.0, 2.5, 1e-300], [7.0, 2.5, 1.0]])
    expected = np.vectorize(math.log)(values)
    assert np.array_equal(text.exact_log(values), expected) and text.exact_log(values).shape == (2, 3)


def test_tfidf_weighs_as_scikit_learn_does():
    from sklearn.feature_extraction.text import TfidfTransformer

    counts = CountVectorizer().fit_transform(["aa aa bb", "bb cc", "cc cc cc aa", "dd"])
    train = np.array([0, 1, 2])
    expected = TfidfTransformer(sublinear_tf=True, norm=None).fit(counts[train]).transform(counts)
    assert np.allclose(text.tfidf(counts, train).toarray(), expected.toarray(), rtol=1e-6)


def test_image_statistics_are_exact():
    levels = np.random.default_rng(0).integers(0, 256, size=(50, 8, 8), dtype=np.uint8)
    mean, std = image.channel_stats(levels)
    assert mean == pytest.approx(levels.astype(np.float64).mean(), rel=1e-15)
    assert std == pytest.approx(levels.astype(np.float64).std(), rel=1e-12)


def test_a_run_records_how_it_was_computed():
    record = compute.environment()
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["numpy_simd"] == (dispatched_features() or ["baseline"])[-1]
    assert record["torch_version"].startswith("2.") and record["numpy_version"] == np.__version__
    assert record["cpu_model"]


def test_torch_capability_follows_aten_cpu_capability():
    probe = "from tuninglab.lab.compute import environment; print(environment()['cpu_capability'])"
    assert stage("-c", probe, env={"ATEN_CPU_CAPABILITY": "default"}).stdout.strip() == "DEFAULT"
