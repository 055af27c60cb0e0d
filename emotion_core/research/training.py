"""Fit loop for the head on cached encoder features. No CLI parsing here (see pipelines/train.py)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn
from tqdm.auto import tqdm

from emotion_core.config import ModelConfig, TrainConfig
from emotion_core.data.corpora import class_mask
from emotion_core.features import MEL_FRAME_RATE
from emotion_core.head.batching import collate, predict_logits, prepare
from emotion_core.head.clip_features import ClipFeatures
from emotion_core.head.model import HybridEmotionCNN
from emotion_core.heap import keep_freed_memory_in_process
from emotion_core.labels import NUM_EMOTIONS
from emotion_core.research import metrics


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    model: HybridEmotionCNN
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def fit(
    clips: Sequence[ClipFeatures],
    labels: np.ndarray,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    val_clips: Sequence[ClipFeatures] = (),
    val_labels: np.ndarray | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    stats_memo: dict | None = None,
    label_masks: np.ndarray | None = None,
    corpora: np.ndarray | None = None,
) -> TrainResult:
    """Train a fresh head. With a validation set, keep the epoch with the best validation UA and stop
    after `patience` epochs without improvement; without one, train all epochs and keep the last.

    `label_masks` [n, 8] bool: the labels each clip's corpus has (`data.corpora.class_mask`); a clip's loss
    is a softmax over those only (unless `train_cfg.mask_loss` is off), so a corpus without `calm` never teaches
    "not calm". `corpora` [n]: each clip's corpus, for `train_cfg.corpus_sampling="balanced"`.

    `stats_memo`: a dict kept across calls on the same clip objects (a tuning study) so the closed-form
    stats branch, which depends only on its training rows, C and layers, is fit once per fold, not per
    trial (the logistic regression is ~5 s of a fold fit)."""
    keep_freed_memory_in_process()
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    set_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    clips, val_clips = prepare(model_cfg, clips), prepare(model_cfg, val_clips)
    num_layers, _, hidden_size = clips[0].hidden.shape
    model = HybridEmotionCNN(num_layers, hidden_size, model_cfg)
    labels = np.asarray(labels)
    loss_fn = class_loss(labels, train_cfg, label_masks)
    draw = epoch_sampler(len(clips), corpora if train_cfg.corpus_sampling == "balanced" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps_per_epoch = max(1, int(np.ceil(len(clips) / train_cfg.batch_size)))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train_cfg.lr, total_steps=train_cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    mel_rate = MEL_FRAME_RATE / model_cfg.mel_pool  # the prepared clips' log-mel frame rate
    max_mel = int(train_cfg.crop_seconds * mel_rate)
    closed_form_stats = model.stats is not None and model_cfg.stats_fit in ("lr", "corpus_lr")
    # the closed-form fit learns from the corpora as the CNN branches do, or ("lr") as though they were one
    stats_corpora = ({"label_masks": label_masks if train_cfg.mask_loss else None,
                      "corpora": corpora if train_cfg.corpus_sampling == "balanced" else None}
                     if model_cfg.stats_fit == "corpus_lr" else {})
    if closed_form_stats:
        model.stats_enabled = False
        model.stats.requires_grad_(False)
        if model.classifier is None:  # stats branch alone: nothing to train by gradient
            _fit_stats_lr(model, clips, labels, model_cfg.stats_c, train_cfg.seed, stats_memo, **stats_corpora)
            return TrainResult(model=model.eval(), best_epoch=0, history=[])
    y = torch.tensor(labels, dtype=torch.long)

    best = (-1.0, 0, copy.deepcopy(model.state_dict()))  # (val UA, epoch, weights)
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, train_cfg.epochs + 1), desc="train", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        perm = draw(rng)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(perm), train_cfg.batch_size):
            idx = perm[i : i + train_cfg.batch_size]
            batch = collate([clips[j] for j in idx], max_mel=max_mel, rng=rng, time_masks=train_cfg.time_masks,
                            mask_mel=int(train_cfg.time_mask_seconds * mel_rate))
            logits = batch.logits(model)
            loss = loss_fn(logits, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == y[idx]).sum())
            total += len(idx)
        row = {"train_loss": loss_sum / total, "train_acc": correct / total, "lr": scheduler.get_last_lr()[0]}
        if len(val_clips):
            val_logits = predict_logits(model, val_clips)
            row.update({f"val_{k}": v for k, v in metrics.summary(val_labels, val_logits.argmax(-1)).items()})
            row["val_loss"] = float(nn.functional.cross_entropy(torch.from_numpy(val_logits), torch.tensor(np.asarray(val_labels))))
            if row["val_ua"] > best[0]:
                best = (row["val_ua"], epoch, copy.deepcopy(model.state_dict()))
        history.append(row)
        bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", "val_ua")})
        if on_epoch:
            on_epoch(epoch, row)
        if len(val_clips) and epoch - best[1] >= train_cfg.patience:
            break
    if len(val_clips):
        model.load_state_dict(best[2])
        best_epoch = best[1]
    else:
        best_epoch = len(history)
    model.eval()
    if closed_form_stats:
        _fit_stats_lr(model, clips, labels, model_cfg.stats_c, train_cfg.seed, stats_memo, **stats_corpora)
    return TrainResult(model=model, best_epoch=best_epoch, history=history)


def corpus_arguments(manifest: pd.DataFrame) -> dict[str, np.ndarray]:
    """`fit`'s per-clip corpus inputs for the rows of `manifest`: the label masks and the corpus names."""
    return {"label_masks": class_mask(manifest["corpus"]), "corpora": manifest["corpus"].to_numpy()}


def class_loss(labels: np.ndarray, train_cfg: TrainConfig,
               label_masks: np.ndarray | None = None) -> Callable[[torch.Tensor, np.ndarray], torch.Tensor]:
    """The training loss of a batch's `logits` and its `rows` (indices into `labels`): cross-entropy with
    inverse-frequency class weights (RAVDESS has half as many neutral clips, and UA weighs classes equally)
    and label smoothing; with `label_masks` and `train_cfg.mask_loss`, each row's softmax is over its
    corpus' labels (`masked_cross_entropy`)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=NUM_EMOTIONS).astype(np.float32)
    weights = torch.tensor(counts.sum() / (NUM_EMOTIONS * np.maximum(counts, 1)), dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    if not train_cfg.mask_loss or label_masks is None or np.asarray(label_masks).all():
        unmasked = nn.CrossEntropyLoss(weight=weights, label_smoothing=train_cfg.label_smoothing)
        return lambda logits, rows: unmasked(logits, y[rows])
    masks = torch.from_numpy(np.asarray(label_masks))
    return lambda logits, rows: masked_cross_entropy(logits, y[rows], masks[rows], weights, train_cfg.label_smoothing)


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                         smoothing: float = 0.0) -> torch.Tensor:
    """`nn.CrossEntropyLoss(weight, label_smoothing)` with each row's softmax (and its smoothing mass) over
    the labels its `mask` allows: equal to it where every label is allowed."""
    logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1).masked_fill(~mask, 0.0)
    nll = -logp.gather(1, target[:, None])[:, 0]
    spread = -(logp * weight[None]).sum(-1) / mask.sum(-1)
    w = weight[target]
    return ((1.0 - smoothing) * w * nll + smoothing * spread).sum() / w.sum()


def epoch_sampler(n: int, corpora: np.ndarray | None) -> Callable[[np.random.Generator], np.ndarray]:
    """The clip order of one epoch: a permutation of all `n`; or, given each clip's corpus, `n` draws with
    every corpus drawn equally often (each without replacement while it has clips left), shuffled."""
    if corpora is None or len(set(corpora)) < 2:
        return lambda rng: rng.permutation(n)
    groups = [np.flatnonzero(np.asarray(corpora) == c) for c in sorted(set(corpora))]

    def draw(rng: np.random.Generator) -> np.ndarray:
        quotas = np.full(len(groups), n // len(groups))
        quotas[: n % len(groups)] += 1
        picks = [np.concatenate([rng.permutation(g) for _ in range(-(-q // len(g)))])[:q] for g, q in zip(groups, quotas)]
        return rng.permutation(np.concatenate(picks))

    return draw


def corpus_weights(corpora: np.ndarray) -> np.ndarray:
    """Per-row weights, mean 1, that give every corpus the same total: what `corpus_sampling="balanced"` draws."""
    names, index, counts = np.unique(np.asarray(corpora), return_inverse=True, return_counts=True)
    return len(corpora) / (len(names) * counts[index])


@torch.inference_mode(False)  # called from the inference-mode stats fit: it needs autograd
@torch.enable_grad()
def masked_logistic_regression(x: np.ndarray, labels: np.ndarray, masks: np.ndarray, weights: np.ndarray,
                               c: float) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's multinomial LogisticRegression (L2, C, lbfgs) over all NUM_EMOTIONS classes, with each row's
    softmax over the labels its mask allows (`masked_cross_entropy`) and the rows weighted: (coef, intercept)."""
    xs, y = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)), torch.from_numpy(np.asarray(labels, np.int64))
    allowed, w = torch.from_numpy(np.asarray(masks, bool)), torch.from_numpy(np.asarray(weights, np.float64))
    coef = torch.zeros(NUM_EMOTIONS, xs.shape[1], dtype=torch.float64, requires_grad=True)
    intercept = torch.zeros(NUM_EMOTIONS, dtype=torch.float64, requires_grad=True)
    # sklearn's objective scaled by 1/Σw (the same minimiser): the mean weighted loss + ‖coef‖² / (2·C·Σw)
    optimizer = torch.optim.LBFGS([coef, intercept], max_iter=3000, tolerance_grad=1e-6, tolerance_change=1e-10,
                                  history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        logp = torch.log_softmax((xs @ coef.T + intercept).masked_fill(~allowed, float("-inf")), dim=-1)
        loss = -(w * logp.gather(1, y[:, None])[:, 0]).sum() / w.sum() + (coef * coef).sum() / (2 * c * w.sum())
        loss.backward()
        return loss

    optimizer.step(objective)
    return coef.detach().numpy(), intercept.detach().numpy()


@torch.inference_mode()
def _fit_stats_lr(model: HybridEmotionCNN, clips: Sequence[ClipFeatures], labels: np.ndarray, c: float, seed: int,
                  memo: dict | None = None, label_masks: np.ndarray | None = None,
                  corpora: np.ndarray | None = None) -> None:
    """Fit the stats branch as StandardScaler + LogisticRegression on whole training clips (the linear
    probe, made part of the model) and switch it on: final logits = CNN logits + probe logits. A clip's training
    copies (`ClipFeatures.variants`) are training clips with its label here too, as they are for the CNN branches.
    With `label_masks` (not all true) each row's softmax is over its corpus' classes; with `corpora`, the
    corpora weigh the same (`masked_logistic_regression`)."""
    rows = np.concatenate([np.arange(len(clips)), [i for i, clip in enumerate(clips) for _ in clip.variants]]).astype(int)
    clips = [*clips, *(copy for clip in clips for copy in clip.variants)]
    labels = np.asarray(labels)[rows]
    masks = None if label_masks is None or np.asarray(label_masks).all() else np.asarray(label_masks)[rows]
    weights = None if corpora is None or len(set(corpora)) < 2 else corpus_weights(np.asarray(corpora)[rows])
    # Keyed by the clip objects themselves and everything the fit reads; the entry holds the clips, so their
    # ids cannot be reused by other objects while the memo lives.
    key = (c, seed, tuple(model.stats.layers), tuple(map(id, clips)), labels.tobytes(),
           *(None if a is None else a.tobytes() for a in (masks, weights)))
    if memo is not None and key in memo:
        model.stats.set_logistic_regression(*memo[key][1])
        model.stats_enabled = True
        return

    x = np.stack([_clip_stats(model, clip, memo) for clip in clips]).astype(np.float64)
    scaler = StandardScaler().fit(x)
    if masks is None and weights is None:
        # BLAS gets the threads torch has: two 1-thread tuning workers each running a 2-thread BLAS oversubscribe
        # the 2 cores, and the waiting threads spin (a 1.7 s fit took 14-21 s while the other worker trained).
        with threadpool_limits(torch.get_num_threads()):
            lr = LogisticRegression(C=c, max_iter=3000, random_state=seed).fit(scaler.transform(x), labels)
        coef, intercept = lr.coef_, lr.intercept_
    else:
        coef, intercept = masked_logistic_regression(
            scaler.transform(x), labels, np.ones((len(x), NUM_EMOTIONS), bool) if masks is None else masks,
            np.ones(len(x)) if weights is None else weights, c)
    fitted = (scaler.mean_, np.where(scaler.var_ > 0, scaler.var_, 1.0), coef, intercept)
    if memo is not None:
        memo[key] = (list(clips), fitted)
    model.stats.set_logistic_regression(*fitted)
    model.stats_enabled = True


def _clip_stats(model: HybridEmotionCNN, clip: ClipFeatures, memo: dict | None) -> np.ndarray:
    """One clip's stats-branch features, kept in `memo`: they depend on the clip alone, not on the fold, C or
    trial, so a study or a cross-validation computes them once per clip."""
    key = ("features", tuple(model.stats.layers), id(clip))
    if memo is not None and key in memo:
        return memo[key][1]
    feats = model.stats.features([clip.hidden])[0].numpy()
    if memo is not None:
        memo[key] = (clip, feats)  # holding the clip keeps its id from being reused
    return feats
