"""ROC-AUC in numpy against a brute-force count, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.evaluation import roc_auc


def _brute(s: np.ndarray, y: np.ndarray) -> float:
    p, n = s[y][:, None], s[~y][None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def test_roc_auc_matches_pairwise_count() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    s = rng.normal(size=500) + y
    assert roc_auc(s, y) == pytest.approx(_brute(s, y))
    q = np.round(s)  # many ties
    assert roc_auc(q, y) == pytest.approx(_brute(q, y))
    assert roc_auc(y.astype(float), y) == 1.0
    assert math.isnan(roc_auc(s, np.zeros(500, bool)))
