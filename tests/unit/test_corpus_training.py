"""Training on several corpora: each corpus declares its labels (emotion_core/data/corpora.py), a clip's loss
is a softmax over its corpus' labels only, and `balanced` sampling draws every corpus equally often; the
closed-form stats branch (`stats_fit="corpus_lr"`) learns the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion_core.config import fingerprint, load_config, stable_hash
from emotion_core.data.corpora import CORPORA, class_mask
from emotion_core.labels import EMOTION_TO_INDEX, EMOTIONS
from emotion_core.research.training import (
    class_loss,
    corpus_weights,
    epoch_sampler,
    masked_cross_entropy,
    masked_logistic_regression,
)


def test_corpora_declare_their_labels_in_the_seed_order() -> None:
    assert CORPORA["ravdess"].classes == EMOTIONS
    assert "calm" not in CORPORA["tess"].classes and len(CORPORA["tess"].classes) == 7
    assert CORPORA["turev"].classes == ("calm", "happy", "sad", "angry")
    mask = class_mask(["ravdess", "turev", "some-hf-dataset"])
    assert mask.shape == (3, 8) and mask[0].all() and mask[2].all()
    assert [EMOTIONS[i] for i in np.flatnonzero(mask[1])] == ["calm", "happy", "sad", "angry"]


def test_masked_loss_is_cross_entropy_where_every_label_is_allowed() -> None:
    torch.manual_seed(0)
    logits, target, weight = torch.randn(32, 8), torch.randint(0, 8, (32,)), torch.rand(8) + 0.5
    reference = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)(logits, target)
    masked = masked_cross_entropy(logits, target, torch.ones(32, 8, dtype=torch.bool), weight, 0.1)
    assert torch.allclose(reference, masked, atol=1e-6)


def test_masked_loss_never_teaches_a_label_the_corpus_lacks() -> None:
    """A TurEV clip (4 labels): the other 4 logits get no gradient, and the loss is the 4-way one."""
    mask = torch.from_numpy(class_mask(["turev"]))
    target = torch.tensor([EMOTION_TO_INDEX["sad"]])
    logits = torch.randn(1, 8, requires_grad=True)
    loss = masked_cross_entropy(logits, target, mask, torch.ones(8), 0.1)
    loss.backward()
    assert torch.all(logits.grad[~mask] == 0) and torch.all(logits.grad[mask] != 0)
    four = logits.detach()[mask][None]
    expected = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(four, torch.tensor([[*mask[0].nonzero()[:, 0]].index(target[0])]))
    assert torch.isclose(loss, expected, atol=1e-6)


def test_the_training_loss_is_masked_unless_mask_loss_is_off() -> None:
    """`class_loss` on rows of RAVDESS and TurEV-DB clips: masked by default; with `train.mask_loss=false`, the
    plain 8-way cross-entropy with the same class weights, so a TurEV clip teaches "not fearful"."""
    torch.manual_seed(0)
    labels = np.array([EMOTION_TO_INDEX[e] for e in ("neutral", "fearful", "sad", "angry", "calm", "happy")])
    masks = class_mask(["ravdess", "ravdess", "turev", "turev", "turev", "turev"])
    logits, rows = torch.randn(4, 8, requires_grad=True), np.array([1, 2, 3, 5])
    counts = np.bincount(labels, minlength=8)
    weight = torch.tensor(counts.sum() / (8 * np.maximum(counts, 1)), dtype=torch.float32)
    target = torch.from_numpy(labels[rows])
    masked = class_loss(labels, load_config("default", ["train.mask_loss=true"]).train, masks)(logits, rows)
    assert torch.isclose(masked, masked_cross_entropy(logits, target, torch.from_numpy(masks[rows]), weight, 0.1))
    unmasked = class_loss(labels, load_config("default", ["train.mask_loss=false"]).train, masks)(logits, rows)
    assert torch.isclose(unmasked, torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)(logits, target))
    unmasked.backward()
    assert logits.grad[1, EMOTION_TO_INDEX["fearful"]] > 0  # the TurEV clip pushes `fearful` down


def test_balanced_sampling_draws_each_corpus_equally() -> None:
    corpora = np.array(["ravdess"] * 100 + ["tess"] * 700 + ["turev"] * 200)
    order = epoch_sampler(len(corpora), corpora)(np.random.default_rng(0))
    drawn = {c: int((corpora[order] == c).sum()) for c in ("ravdess", "tess", "turev")}
    assert len(order) == 1000 and max(drawn.values()) - min(drawn.values()) <= 1
    assert len(set(order[corpora[order] == "tess"])) == drawn["tess"]  # no repeats where a corpus has enough
    natural = epoch_sampler(1000, None)(np.random.default_rng(0))
    assert sorted(natural) == list(range(1000))


def _separable(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised 8-class features with overlapping classes (a real LR problem, not a separable one)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 8
    x = rng.normal(size=(8, 16))[labels] * 0.8 + rng.normal(size=(n, 16))
    return (x - x.mean(0)) / x.std(0), labels


def test_the_masked_fit_is_sklearns_logistic_regression_where_nothing_is_masked() -> None:
    from sklearn.linear_model import LogisticRegression
    x, y = _separable()
    coef, intercept = masked_logistic_regression(x, y, np.ones((len(y), 8), bool), np.ones(len(y)), c=0.03)
    reference = LogisticRegression(C=0.03, max_iter=3000, tol=1e-8).fit(x, y)
    assert np.allclose(coef, reference.coef_, atol=1e-4) and np.allclose(intercept, reference.intercept_, atol=1e-4)


def test_the_masked_fit_learns_nothing_from_a_label_the_corpus_lacks() -> None:
    """A row whose corpus allows its own label only has zero loss: the fit is the one without it. A row of
    weight 2 is the row twice; balanced weights give each corpus the same total."""
    x, y = _separable()
    everything = np.ones((len(y), 8), bool)
    without = masked_logistic_regression(x[:200], y[:200], everything[:200], np.ones(200), c=0.03)
    inert = everything.copy()
    inert[200:] = np.eye(8, dtype=bool)[y[200:]]
    with_inert = masked_logistic_regression(x, y, inert, np.ones(len(y)), c=0.03)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(without, with_inert))
    assert not np.allclose(without[0], masked_logistic_regression(x, y, everything, np.ones(len(y)), c=0.03)[0], atol=1e-3)

    doubled = np.r_[x, x[:40]], np.r_[y, y[:40]]
    weights = np.ones(len(y))
    weights[:40] = 2
    assert np.allclose(masked_logistic_regression(*doubled, np.ones((len(y) + 40, 8), bool), np.ones(len(y) + 40), c=0.03)[0],
                       masked_logistic_regression(x, y, everything, weights, c=0.03)[0], atol=1e-4)
    w = corpus_weights(np.array(["ravdess"] * 6 + ["tess"] * 2))
    assert np.isclose(w.mean(), 1) and np.isclose(w[:6].sum(), w[6:].sum())


def test_new_settings_at_their_neutral_value_keep_stored_fingerprints() -> None:
    # one corpus, as every recipe before these settings existed: at their neutral value they are not hashed
    one_corpus = ["data.extra_train=[]", "train.excerpt_seconds=[]"]
    before = load_config("default", [*one_corpus, "train.corpus_sampling=natural", "train.mask_loss=true"])
    settings = before.model_dump(exclude={"name"})
    del settings["adapt"], settings["train"]["augment"], settings["train"]["copy_corpora"], settings["train"]["excerpt_seconds"]
    del settings["train"]["corpus_sampling"], settings["train"]["mask_loss"]
    assert fingerprint(before) == stable_hash(settings)
    for other in ("train.corpus_sampling=balanced", "train.mask_loss=false"):
        assert fingerprint(before) != fingerprint(load_config("default", [*one_corpus, other]))


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_every_corpus_has_a_reader_and_a_language(name: str) -> None:
    corpus = CORPORA[name]
    assert corpus.name == name and corpus.language and corpus.speakers > 0 and callable(corpus.reader)
