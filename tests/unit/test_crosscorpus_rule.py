"""The cross-corpus adoption rule (`crosscorpus.judge`) on hand-written measurements: what it adopts, what it
calls a tie, and how a candidate measured on fewer CV seeds is compared."""

from __future__ import annotations

import pytest

from emotion_core.research.crosscorpus import CrossCorpusSpec, judge, measured_seeds, run


def recipe(loco: dict[str, list[float]], cv: dict[int, float]) -> dict:
    """A measured recipe: per-seed UAs of each held-out corpus, and each CV seed's UA."""
    return {"loco": {h: {"ua_mean": sum(u) / len(u), "per_seed": [{"seed": i, "ua": x} for i, x in enumerate(u)]}
                     for h, u in loco.items()},
            "cv": {"ua_mean": sum(cv.values()) / len(cv), "per_seed": [{"seed": s, "ua": x} for s, x in cv.items()]}}


RULE = {"loco_gain": 0.03, "max_cv_loss": 0.01}
BASE = recipe({"tess": [0.50, 0.52], "turev": [0.14, 0.16]}, {0: 0.76, 1: 0.78, 2: 0.77})


def test_a_clear_gain_that_keeps_the_cv_is_adopted():
    rows = [BASE, recipe({"tess": [0.56, 0.58], "turev": [0.18, 0.20]}, {0: 0.765, 1: 0.775, 2: 0.77})]
    assert judge(rows, ["tess", "turev", "ravdess"]) == ["tess", "turev"]  # the baseline is never scored on RAVDESS
    assert rows[1]["loco_gain"] == pytest.approx(0.05)
    assert rows[1]["cv_change"] == pytest.approx(0.0)
    assert rows[1]["adopt"] and not rows[0]["adopt"]


def test_the_means_are_over_the_corpora_every_row_was_scored_on():
    """A baseline trained on all three corpora is scored on RAVDESS too; a RAVDESS-only candidate cannot be."""
    base = recipe({"tess": [0.46, 0.47], "turev": [0.28, 0.28], "ravdess": [0.30, 0.31]}, {0: 0.76, 1: 0.75})
    rows = [base, recipe({"tess": [0.53, 0.54], "turev": [0.14, 0.15]}, {0: 0.765, 1: 0.76})]
    assert judge(rows, ["tess", "turev", "ravdess"]) == ["tess", "turev"]
    assert rows[0]["loco_mean"] == pytest.approx((0.465 + 0.28) / 2)
    assert rows[1]["loco_gain"] == pytest.approx((0.535 + 0.145 - 0.465 - 0.28) / 2)


def test_a_gain_within_the_seed_spread_is_a_tie():
    rows = [BASE, recipe({"tess": [0.48, 0.68], "turev": [0.14, 0.16]}, {0: 0.76, 1: 0.78, 2: 0.77})]
    judge(rows, ["tess", "turev"])
    assert rows[1]["loco_gain"] == pytest.approx(0.035) and rows[1]["loco_mean_seed_std"] == pytest.approx(0.055)
    assert not rows[1]["adopt"]


def test_fewer_cv_seeds_are_compared_with_the_baselines_same_seeds():
    # the baseline's seed 0 is its lowest: against its 3-seed mean this candidate would lose 1.2 pt and fail
    rows = [BASE, recipe({"tess": [0.56, 0.58], "turev": [0.18, 0.20]}, {0: 0.758})]
    judge(rows, ["tess", "turev"])
    assert rows[1]["cv_change"] == pytest.approx(-0.002)
    assert rows[1]["cv_change_seed_std"] is None  # one paired seed: no spread to show
    assert rows[1]["adopt"]


def test_a_candidate_may_name_its_own_cv_seeds():
    spec = CrossCorpusSpec.model_validate({"cv_seeds": [0, 1, 2], "candidates": [
        {"name": "adapted", "set": ["adapt.layers=1"], "cv_seeds": [0]}, {"name": "plain", "set": []}]})
    assert [c.cv_seeds for c in spec.candidates] == [[0], None]


def test_a_candidate_whose_cv_is_not_measured_yet_is_undecided():
    """`cv_seeds: []`: the held-out corpora first (a costly recipe), the CV in a later run; never adopted meanwhile."""
    from emotion_core.research.reporting import _verdict

    rows = [BASE, {**recipe({"tess": [0.56, 0.58], "turev": [0.28, 0.30]}, {0: 0.77}), "cv": {}, "name": "costly"}]
    judge(rows, ["tess", "turev"])
    assert rows[1]["loco_gain"] == pytest.approx(0.10) and rows[1]["cv_change"] is None and not rows[1]["adopt"]
    assert "undecided" in _verdict(rows[1], rows[0], RULE)
    spec = CrossCorpusSpec.model_validate({"candidates": [{"name": "costly", "set": [], "cv_seeds": []}]})
    assert spec.candidates[0].cv_seeds == []  # not the spec's seeds


def test_a_candidate_whose_held_out_half_fails_needs_no_cv():
    from emotion_core.research.reporting import _verdict

    rows = [BASE, {**recipe({"tess": [0.40, 0.42], "turev": [0.18, 0.20]}, {0: 0.77}), "cv": {}, "name": "worse"}]
    judge(rows, ["tess", "turev"])
    assert rows[1]["fails"] == ["gain"] and not rows[1]["adopt"]
    assert "**not adopted** (gains under 3 pt)" in _verdict(rows[1], rows[0], RULE)


def test_a_candidate_with_another_pooling_is_refused_before_any_data_is_read():
    spec = CrossCorpusSpec(base="smoke", held_out=["tess"], seeds=[0],
                           candidates=[{"name": "finer log-mel", "set": ["model.mel_pool=1"]}])
    with pytest.raises(ValueError, match="finer log-mel.*mel_pool must be the base's"):
        run(spec, progress=False)


def test_a_rejected_candidate_is_told_which_part_of_the_rule_it_fails():
    from emotion_core.research.reporting import _verdict

    # the held-out corpora gain 5 pt, but the paired CV seed loses 1.1 pt (the limit is 1)
    rows = [BASE, {**recipe({"tess": [0.56, 0.58], "turev": [0.18, 0.20]}, {0: 0.749}), "name": "costly"}]
    judge(rows, ["tess", "turev"])
    line = _verdict(rows[1], rows[0], RULE)
    assert not rows[1]["adopt"] and "RAVDESS CV -1.10 pt" in line and "(the CV loses more than 1 pt)" in line
    rows = [BASE, {**recipe({"tess": [0.50, 0.53], "turev": [0.14, 0.16]}, {0: 0.77}), "name": "small"}]
    judge(rows, ["tess", "turev"])
    assert "(gains under 3 pt; a tie within the seed spread)" in _verdict(rows[1], rows[0], RULE)


def test_stored_cv_seeds_are_given_back_whole_or_not_at_all():
    folds = [{"fold": 1, "ua": 0.7, "wa": 0.7, "macro_f1": 0.7}, {"fold": 2, "ua": 0.8, "wa": 0.8, "macro_f1": 0.8}]
    old_one_seed = {"cv": {"per_fold": folds, "per_seed": [{"seed": 0, "ua": 0.75, "wa": 0.75}]}}
    assert measured_seeds(old_one_seed) == {0: {"seed": 0, "ua": 0.75, "wa": 0.75, "per_fold": folds}}
    old_three_seeds = {"cv": {"per_fold": folds, "per_seed": [{"seed": s, "ua": 0.75, "wa": 0.75} for s in range(3)]}}
    assert measured_seeds(old_three_seeds) == {}  # only their average folds were kept
    kept = {"cv": {"per_seed": [{"seed": s, "ua": 0.75, "wa": 0.75, "per_fold": folds} for s in (0, 2)]}}
    assert list(measured_seeds(kept)) == [0, 2] and measured_seeds({"cv": {}}) == {}
