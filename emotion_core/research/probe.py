"""The linear-probe baseline (logistic regression on mean+std-pooled hidden states of every encoder layer; the
CNN head has to beat it on the same folds, in the same run) and the speaker-normalised probe that per-user
calibration ships (`head.speaker`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from emotion_core.head.calibration import fit_temperature
from emotion_core.head.clip_features import ClipFeatures
from emotion_core.head.speaker import SpeakerProbe, clip_statistics, standardise_per_speaker
from emotion_core.research.training import corpus_weights


def pooled(clips: Sequence[ClipFeatures]) -> np.ndarray:
    """[N, L * 2D]: per layer, mean and std over frames."""
    return np.stack([clip_statistics(c) for c in clips])


def fit_probe(features: np.ndarray, labels: np.ndarray, C: float = 0.01, seed: int = 0,
              weights: np.ndarray | None = None) -> Pipeline:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, random_state=seed))
    return clf.fit(features, labels, **({} if weights is None else {"logisticregression__sample_weight": weights}))


def fit_speaker_probe(stats: np.ndarray, labels: np.ndarray, speakers: Sequence[Any], c: float = 0.01,
                      seed: int = 0, calibration_folds: int = 4, corpora: Sequence[str] | None = None) -> SpeakerProbe:
    """Fit on the training speakers (each standardised with all its own clips); with `corpora` (each row's) every
    corpus weighs the same, as the head's training draws them. The temperature comes from out-of-fold logits
    with speakers held out (GroupKFold), never from clips the probe was fit on."""
    speakers = np.asarray(speakers)
    normed = standardise_per_speaker(stats, speakers)
    labels = np.asarray(labels)
    weights = None if corpora is None or len(set(corpora)) < 2 else corpus_weights(np.asarray(corpora))
    temperature = 1.0
    folds = min(calibration_folds, len(np.unique(speakers)))
    if folds >= 2:
        oof = np.zeros((len(labels), int(labels.max()) + 1))
        for tr, te in GroupKFold(n_splits=folds).split(normed, labels, speakers):
            clf = fit_probe(normed[tr], labels[tr], C=c, seed=seed, weights=None if weights is None else weights[tr])
            oof[np.ix_(te, clf.classes_)] = clf.decision_function(normed[te])
        temperature = fit_temperature(oof, labels)
    clf = fit_probe(normed, labels, C=c, seed=seed, weights=weights)
    scaler, lr = clf[0], clf[-1]
    if len(lr.classes_) != lr.coef_.shape[0] or list(lr.classes_) != list(range(len(lr.classes_))):
        raise ValueError(f"the speaker probe needs every emotion in training, got classes {list(lr.classes_)}")
    return SpeakerProbe(scaler.mean_, np.where(scaler.scale_ > 0, scaler.scale_, 1.0), lr.coef_, lr.intercept_,
                        temperature)
