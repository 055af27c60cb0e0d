"""`make crosscorpus` and `make robustness`, shrunk. Cross-corpus: the smoke recipe and one multi-corpus
candidate, leave-one-corpus-out on RAVDESS / TESS / TurEV-DB (120 clips each of the other corpora) and the
RAVDESS CV, one seed; robustness: the smoke CV heads on degraded test clips. Real runs into the test
session's MLflow store and reports dir; the reports, their figures and the README block."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from emotion_core.config import reports_dir
from emotion_core.research import crosscorpus
from emotion_core.research.reporting import crosscorpus_readme_text


@pytest.fixture(scope="module")
def report(mlflow_store, smoke_cfg) -> dict:
    spec = crosscorpus.CrossCorpusSpec(base="smoke", held_out=["tess", "turev", "ravdess"], seeds=[0], max_clips=120,
                                       candidates=[{"name": "+ TESS + TurEV", "set": ["data.extra_train=[tess, turev]"]}])
    return crosscorpus.run(spec, progress=False)


def test_every_recipe_is_scored_on_every_corpus_it_did_not_train_on(report: dict, smoke_cfg) -> None:
    baseline, candidate = report["recipes"]
    assert set(baseline["loco"]) == {"tess", "turev"}  # trained on RAVDESS only: RAVDESS cannot be held out
    assert set(candidate["loco"]) == {"tess", "turev", "ravdess"}
    assert candidate["loco"]["tess"]["trained_on"] == ["ravdess", "turev"]
    assert candidate["loco"]["ravdess"]["trained_on"] == ["tess", "turev"]
    for row in report["recipes"]:
        for held, cell in row["loco"].items():
            classes = report["corpora"][held]["classes"]
            assert set(cell["recall"]) == set(classes) and 0.0 <= cell["ua_mean"] <= 1.0
            assert cell["ua_mean"] == pytest.approx(sum(cell["recall"].values()) / len(classes))
            assert (reports_dir(smoke_cfg) / cell["figure"]).is_file()
        assert 0.0 < row["cv"]["ua_mean"] <= 1.0 and len(row["cv"]["per_fold"]) >= 1
    assert report["comparable"] == ["tess", "turev"] and isinstance(candidate["adopt"], bool)
    assert all(c["no_speech_rate"] == 0.0 for c in report["corpora"].values() if "no_speech_rate" in c)
    calibrated = report["per_user_calibration"]  # the shipped enroll() probe, 10 clips of each unseen speaker
    assert set(calibrated) == {"tess", "turev"} and all(0.0 <= c["ua"] <= 1.0 and c["enrollment"] == 10
                                                         for c in calibrated.values())


def test_each_corpus_learnt_from_its_own_other_speakers_is_the_scale(report: dict) -> None:
    ref = report["within_corpus"]
    assert set(ref) == {"tess", "turev", "ravdess"}
    assert all(ref[h]["n_groups"] == report["corpora"][h]["speakers"] for h in ("tess", "turev")) and ref["ravdess"]["groups"] == "EmoBox folds"
    for held, cell in ref.items():
        assert set(cell["recall"]) == set(report["corpora"][held]["classes"]) and 0.0 <= cell["ua"] <= 1.0
    assert "each corpus learnt from its own labels" in crosscorpus_readme_text(report)


def test_where_an_unheard_voice_is_lost(report: dict, smoke_cfg) -> None:
    """The RAVDESS probe on each other held-out corpus: restricting its answer to the corpus' classes can only
    turn wrong answers right (an 8-way answer inside them is unchanged), and the report says all three."""
    transfer = report["transfer"]
    assert set(transfer) == {"tess", "turev"}
    for held, cell in transfer.items():
        assert cell["own_classes"] >= cell["as_served"] and 0.0 <= cell["own_classes_mean_moved"] <= 1.0
        assert cell["chance"] == pytest.approx(1 / len(report["corpora"][held]["classes"]))
    assert "## Where an unheard voice is lost" in (reports_dir(smoke_cfg) / "crosscorpus.md").read_text()


def test_adapting_to_each_voice_is_scored_after_its_first_recordings(report: dict) -> None:
    """`X-Speaker-Id` as the service meets it: each speaker's clips streamed through a RunningProfile, only the
    answers after its first ADAPT_MIN_CLIPS counted; on RAVDESS each CV fold's probe never saw its test actors."""
    from emotion_core.head.speaker import ADAPT_MIN_CLIPS

    adapted = report["adaptation"]
    assert set(adapted) == {"tess", "turev", "ravdess"}
    for held in ("tess", "turev"):
        speakers = report["corpora"][held]["speakers"]
        (row,) = adapted[held]["per_seed"]
        # every clip after its speaker's first ADAPT_MIN_CLIPS (a shrunk corpus may give a speaker fewer)
        assert report["corpora"][held]["clips"] - speakers * ADAPT_MIN_CLIPS <= row["clips"] < report["corpora"][held]["clips"]
        assert row["ua"] == pytest.approx(sum(row["recall"].values()) / len(row["recall"]))
    assert len(adapted["ravdess"]["per_seed"][0]["per_fold"]) == 5  # the smoke actors fill 5 of the 6 folds
    # beside the shipped probe (RAVDESS actors), one fit on every corpus but the one it scores
    every = report["adaptation_every_corpus"]
    assert adapted["tess"]["trained_on"] == ["ravdess"] and every["tess"]["trained_on"] == ["ravdess", "turev"]
    assert every["turev"]["trained_on"] == ["ravdess", "tess"]
    assert every["ravdess"]["trained_on"] == ["ravdess (other folds' actors)", "tess", "turev"]
    assert all(0.0 <= every[h]["ua_mean"] <= 1.0 for h in ("tess", "turev", "ravdess"))
    block = crosscorpus_readme_text(report)
    assert "adapted to the speaker after 10 recordings" in block and "every training corpus' speakers" in block


def test_report_files_and_readme_block(report: dict, smoke_cfg) -> None:
    out = reports_dir(smoke_cfg)
    assert json.loads((out / "crosscorpus.json").read_text())["run_id"] == report["run_id"]
    md = (out / "crosscorpus.md").read_text()
    assert "held-out TESS" in md and "RAVDESS 6-fold" in md and "+ TESS + TurEV" in md
    block = crosscorpus_readme_text(report)
    # one table: each recipe's row carries its held-out corpora beside its RAVDESS CV
    assert block.count("| baseline: smoke (as served) |") == 1
    row = next(line for line in block.splitlines() if line.startswith("| baseline: smoke (as served) |"))
    assert "held-out TESS" in block and "RAVDESS CV UA" in block and "not measured yet" not in row


def test_a_second_run_reuses_what_it_measured(report: dict) -> None:
    spec = crosscorpus.CrossCorpusSpec(base="smoke", held_out=["tess", "turev", "ravdess"], seeds=[0], max_clips=120,
                                       candidates=[{"name": "+ TESS + TurEV", "set": ["data.extra_train=[tess, turev]"]}])
    again = crosscorpus.run(spec, progress=False)
    assert [r["cv"] for r in again["recipes"]] == [r["cv"] for r in report["recipes"]]
    assert again["seconds"] < report["seconds"]


def test_more_cv_seeds_or_a_new_name_remeasure_only_what_changed(report: dict, smoke_cfg, monkeypatch) -> None:
    """A row is found by what it measured, not by its name or file (a re-based run moves rows between files),
    and asking for more CV seeds measures the new seeds' CV only."""
    spec = crosscorpus.CrossCorpusSpec(base="smoke", held_out=["tess", "turev", "ravdess"], seeds=[0], cv_seeds=[0, 1],
                                       max_clips=120, candidates=[{"name": "renamed", "set": ["data.extra_train=[tess, turev]"]}])
    again = crosscorpus.run(spec, progress=False)
    for before, now in zip(report["recipes"], again["recipes"]):
        assert {h: c["per_seed"] for h, c in now["loco"].items()} == {h: c["per_seed"] for h, c in before["loco"].items()}
        assert [s["seed"] for s in now["cv"]["per_seed"]] == [0, 1] and now["cv_seeds"] == [0, 1]
        uas = [f["ua"] for f in now["cv"]["per_fold"]]
        assert now["cv"]["ua_mean"] == pytest.approx(sum(s["ua"] for s in now["cv"]["per_seed"]) / 2)
        assert now["cv"]["ua_mean"] == pytest.approx(sum(uas) / len(uas))
    assert again["recipes"][1]["name"] == "renamed" and again["recipes"][1]["cv_change_seed_std"] is not None
    stored = reports_dir(smoke_cfg) / "crosscorpus"
    assert sorted(p.name for p in stored.glob("*.json")) == ["00-baseline-smoke-as-served.json", "01-renamed.json"]
    assert "UA by seed" in (reports_dir(smoke_cfg) / "crosscorpus.md").read_text()
    # each seed's folds are stored: a run asking for a seed measured before trains nothing
    def no_training(*_, **__):
        raise AssertionError("a stored CV seed was trained again")

    monkeypatch.setattr(crosscorpus.cv, "run_fold", no_training)
    only = crosscorpus.run(spec.model_copy(update={"cv_seeds": [1]}), progress=False)
    for both, one in zip(again["recipes"], only["recipes"]):
        assert one["cv"]["per_seed"] == [both["cv"]["per_seed"][1]] and one["cv"]["per_fold"] == both["cv"]["per_seed"][1]["per_fold"]


def test_robustness_report_shrunk(mlflow_store, smoke_cfg) -> None:
    """`make robustness`, shrunk: the smoke CV heads on every 6th test clip, clean and under two conditions, beside
    the same recipe trained on quieter copies (`--augment gain-20db`), scored on the same clips."""
    from emotion_core.config import load_config
    from emotion_core.research import robustness

    augmented = load_config("smoke", ["train.augment=[gain-20db]"])
    report = robustness.run(smoke_cfg, conditions=["babble-5db", "gain-20db"], every=6, progress=False,
                            candidates={"+ quiet copies": augmented})
    assert set(report["conditions"]) == {"clean", "babble-5db", "gain-20db"}
    [(name, candidate)] = report["candidates"].items()
    assert candidate["set"] == {"train.augment": ["gain-20db"]} and set(candidate["conditions"]) == set(report["conditions"])
    for table in (report["conditions"], candidate["conditions"]):
        for row in table.values():
            assert 0.0 <= row["ua_mean"] <= 1.0 and len(row["per_fold"]) >= 2
        assert table["clean"]["ua_drop"] == 0
        folds = [[r["fold"] for r in row["per_fold"]] for row in table.values()]
        assert all(f == folds[0] for f in folds)  # every condition scored by the same fold heads
    md = (reports_dir(smoke_cfg) / "robustness.md").read_text()
    assert md.count("| babble-5db |") == 1 and f"| {name} | change |" in md


def test_a_recipe_with_training_copies_trains_on_them(smoke_run) -> None:
    """A candidate's `train.augment` reaches its heads: its training corpora's clips carry the copies (encoded once
    into the cache), the held-out corpus' clips do not."""
    from emotion_core.config import load_config
    from emotion_core.data.corpora import CORPORA
    from emotion_core.research.cache import EmbeddingCache

    only = ["train.excerpt_seconds=[]"]  # the served recipe's word-length copies aside: the telephone copy alone
    cfg = load_config("smoke", [*only, "train.augment=[telephone]"])
    corpora = {"ravdess": smoke_run["manifest"].head(4), "tess": CORPORA["tess"].read().head(3)}
    cache = EmbeddingCache.of(cfg)
    union = pd.concat(corpora.values(), ignore_index=True)
    cache.build(union, progress=False)
    clips = {c: clip.pooled(cfg.model.frame_pool) for c, clip in zip(union["clip_id"], cache.iter(union))}
    copied = crosscorpus.with_copies(cfg, cache, corpora, clips)
    assert all(len(copied[c].variants) == 1 for c in corpora["ravdess"]["clip_id"])
    assert all(copied[c] is clips[c] and not clips[c].variants for c in corpora["tess"]["clip_id"])
    assert crosscorpus.with_copies(load_config("smoke", only), cache, corpora, clips) is clips


def test_an_adapted_recipe_adapts_the_encoder_before_it_meets_unheard_voices(smoke_run) -> None:
    """With `adapt.layers`, a leave-one-corpus-out head trains on the states of top layers adapted on its own
    training split and scores the held-out corpus on them too; every clip's frozen states come back after."""
    import torch

    from emotion_core.config import load_config
    from emotion_core.data.corpora import CORPORA
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.top_layer_fit import source_state

    cfg = load_config("smoke", ["adapt.layers=1", "adapt.epochs=1"])
    ravdess, tess = smoke_run["manifest"], CORPORA["tess"].read().head(20)
    union = pd.concat([ravdess, tess], ignore_index=True)
    cache = EmbeddingCache.of(cfg)
    cache.build(union, progress=False)
    clips, sources = {}, {}
    for c, clip in zip(union["clip_id"], cache.iter(union)):
        clips[c], sources[c] = clip.pooled(cfg.model.frame_pool), source_state(clip, cfg.adapt)
    frozen = {c: clip.hidden.clone() for c, clip in clips.items()}
    scores, adaptation = crosscorpus._fit_and_score(cfg, ravdess, clips, 0, {"tess": tess}, {}, sources)
    assert adaptation is not None and adaptation.best_epoch == 1 and adaptation.seconds > 0
    assert sum(map(sum, scores["tess"]["confusion"])) == len(tess) and 0.0 <= scores["tess"]["ua"] <= 1.0
    assert all(torch.equal(clips[c].hidden, h) for c, h in frozen.items())
    with pytest.raises(ValueError, match="source state"):
        crosscorpus._fit_and_score(cfg, ravdess, clips, 0, {"tess": tess}, {})


def test_a_recipe_behind_another_front_end_reads_its_own_features(predictor) -> None:
    """`encoder.level_dbfs` / `encoder.min_seconds`: the cache keeps those features apart from the plain ones,
    builds them from the clips as the front end gives them (a TESS word centred in 4 s of silence), and a model
    whose meta records the front end is served through it (a model registered before it existed: as recorded)."""
    from dataclasses import replace

    from emotion_core.audio import load_audio
    from emotion_core.config import load_config
    from emotion_core.data.corpora import CORPORA
    from emotion_core.front_end import FrontEnd, speech_level_dbfs
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.serving.predictor import Predictor

    cfg = load_config("smoke")
    cache, plain = EmbeddingCache.of(cfg), EmbeddingCache.of(load_config("smoke", ["encoder.level_dbfs=null",
                                                                                   "encoder.min_seconds=0"]))
    assert cache.root != plain.root and cache.root.name.endswith("-level-26-min4s")
    words = CORPORA["tess"].read().head(2)
    cache.build(words, progress=False)
    for row, clip in zip(words.itertuples(), cache.iter(words)):
        assert load_audio(row.path).size < 4 * 16000 and clip.hidden.shape[1] == 4 * 50  # 4 s at 50 Hz
    heard = FrontEnd.of(cfg.encoder)(load_audio(words["path"].iloc[0]))
    assert abs(speech_level_dbfs(heard) + 26) < 0.5
    word = load_audio(words["path"].iloc[0])
    assert predictor.front_end == FrontEnd.of(cfg.encoder) and predictor.features(word).hidden.shape[1] == 4 * 50
    older = Predictor(predictor.model, replace(predictor.meta, front_end={}))
    assert older.front_end == FrontEnd() and older.features(word).hidden.shape[1] < 4 * 50
