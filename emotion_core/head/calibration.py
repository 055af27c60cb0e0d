"""Temperature scaling (fit on training-side validation logits), ECE and reliability diagrams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emotion_core.labels import CONFIDENCE_THRESHOLD


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (one parameter: argmax, hence accuracy, is unchanged)."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: confidence vs accuracy gap, weighted over equal-width confidence bins."""
    conf, correct = probs.max(-1), probs.argmax(-1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return float(sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).mean()
                     for b in range(n_bins) if (bins == b).any()))


def threshold_stats(probs: np.ndarray, labels: np.ndarray, threshold: float = CONFIDENCE_THRESHOLD) -> dict[str, float]:
    """Share of predictions at or above the warning threshold, and their accuracy."""
    confident = probs.max(-1) >= threshold
    acc = float((probs.argmax(-1) == labels)[confident].mean()) if confident.any() else float("nan")
    return {"share_confident": float(confident.mean()), "accuracy_confident": acc}


def plot_reliability(curves: dict[str, np.ndarray], labels: np.ndarray, path: Path, n_bins: int = 10) -> Path:
    """Reliability diagram: accuracy per confidence bin for each named set of probabilities."""
    import matplotlib  # plots only: matplotlib stays off the training and serving paths

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after the headless backend is chosen

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, probs in curves.items():
        conf, correct = probs.max(-1), probs.argmax(-1) == labels
        bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
        xs = [conf[bins == b].mean() for b in range(n_bins) if (bins == b).sum() >= 5]
        ys = [correct[bins == b].mean() for b in range(n_bins) if (bins == b).sum() >= 5]
        ax.plot(xs, ys, "o-", label=f"{name} (ECE {ece(probs, labels):.3f})")
    ax.axvline(CONFIDENCE_THRESHOLD, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (test actors, all folds)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
