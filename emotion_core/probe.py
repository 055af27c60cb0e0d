"""The linear-probe baseline: logistic regression on mean+std-pooled hidden states of every encoder
layer. The CNN head has to beat it on the same folds, in the same run."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emotion_core.embeddings import ClipFeatures
from emotion_core.speaker import clip_statistics


def pooled(clips: Sequence[ClipFeatures]) -> np.ndarray:
    """[N, L * 2D]: per layer, mean and std over frames."""
    return np.stack([clip_statistics(c) for c in clips])


def fit_probe(features: np.ndarray, labels: np.ndarray, C: float = 0.01, seed: int = 0) -> Pipeline:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    return clf.fit(features, labels)
