"""Classification metrics (scikit-learn) and the confusion-matrix figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, classification_report, confusion_matrix, f1_score

from emotion_core.labels import EMOTIONS, NUM_EMOTIONS

LABELS = list(range(NUM_EMOTIONS))


def summary(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """UA (unweighted accuracy = balanced accuracy = mean per-class recall), WA (accuracy), macro-F1."""
    return {
        "ua": float(balanced_accuracy_score(y_true, y_pred)),
        "wa": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
    }


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    return classification_report(
        y_true, y_pred, labels=LABELS, target_names=list(EMOTIONS), output_dict=True, zero_division=0
    )


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=LABELS)


def plot_confusion(matrix: np.ndarray, path: Path, title: str, normalise: bool = True) -> Path:
    """Save a confusion matrix (rows = true emotion) as PNG; row-normalised by default."""
    import matplotlib  # plots only: the headless backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the headless backend is chosen

    values = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1) if normalise else matrix
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    ax.set_xticks(range(NUM_EMOTIONS), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(NUM_EMOTIONS), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(NUM_EMOTIONS):
        for j in range(NUM_EMOTIONS):
            text = f"{values[i, j]:.2f}" if normalise else str(int(values[i, j]))
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > (0.5 if normalise else values.max() / 2) else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
