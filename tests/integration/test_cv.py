"""Cross-validation, calibration and tuning on the real smoke subset (6 actors, 3 epochs). Temperature scaling,
the tuning space, study names and the pruner without data: tests/unit/test_calibration.py, tests/unit/test_tuning.py."""

import json
import os
from pathlib import Path

import numpy as np
import pytest


def test_crossval_smoke(smoke_run, smoke_cfg):
    import torch

    from emotion_core.research import cv

    threads = torch.get_num_threads()
    report = cv.run(smoke_cfg, adapted=(10,), progress=False, served_runtime_check=True)
    assert torch.get_num_threads() == threads  # the int8 encoder's serving thread setting must not leak into training
    head, probe = report["head"], report["probe"]
    served = report["head_served_runtime"]  # the same fold models on the int8 encoder's features
    assert served["runtime"] == "onnx-int8" and abs(served["ua_mean"] - head["ua_mean"]) <= 0.03
    assert np.array(served["confusion"]).sum() == 360
    assert [f["fold"] for f in head["per_fold"]] == report["folds"] == [1, 2, 4, 5, 6]
    assert 0.0 <= head["ua_mean"] <= 1.0 and 0.0 <= probe["ua_mean"] <= 1.0
    assert np.array(head["confusion"]).sum() == 360  # every clip scored exactly once, by a model that never saw its actor
    assert set(head["per_actor_accuracy"]) == {1, 2, 3, 4, 11, 13}
    assert len(report["calibration"]["temperatures"]) == 5
    rs = report["random_split"]  # speaker-dependent: 5 seeds, each its own 20 % test clips and head (fit on the whole 80 %)
    assert rs["epochs"] == smoke_cfg.train.epochs
    assert [s["seed"] for s in rs["per_seed"]] == list(range(smoke_cfg.train.seed, smoke_cfg.train.seed + 5))
    assert all(s["n_test"] == 72 for s in rs["per_seed"]) and rs["wa_mean"] == pytest.approx(np.mean([s["wa"] for s in rs["per_seed"]]))
    out = Path(os.environ["EMOTION_REPORTS_DIR"]) / "smoke"
    for name in ("cv.json", "cv.md", "cv_confusion.png", "cv_confusion_counts.png", "reliability.png"):
        assert (out / name).stat().st_size > 500, name
    assert json.loads((out / "cv.json").read_text())["run_id"] == report["run_id"]
    text = (out / "cv.md").read_text()
    assert "linear probe" in text and "speaker-dependent" in text and "Whisper-large-v3" in text and "onnx-int8" in text
    assert "The goal of 80% UA is" in text  # where it stands against the goal, not only against the baselines

    import mlflow

    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{report['run_id']}'", output_format="list",
                                  search_all_experiments=True)
    assert len(children) == 5 and all("test_ua" in c.data.metrics for c in children)


def test_fold_ensemble_and_extra_training_data(smoke_run, smoke_cfg):
    """train.ensemble=2 averages two heads, each trained exactly as a single run with its own seed (and so its
    own validation actors); data.extra_train=[tess] only ever adds training rows."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest, split_actors
    from emotion_core.research import cv, steps
    from emotion_core.research.cache import EmbeddingCache

    cfg = load_config("smoke", ["train.epochs=1", "model.use_stats_branch=false"])
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    clips = EmbeddingCache.of(cfg).load(manifest, frame_pool=cfg.model.frame_pool)
    single = [cv.run_fold(load_config("smoke", ["train.epochs=1", "model.use_stats_branch=false", f"train.seed={s}"]),
                          manifest, clips, 1) for s in (0, 1)]
    pair = cv.run_fold(load_config("smoke", ["train.epochs=1", "model.use_stats_branch=false", "train.ensemble=2"]),
                       manifest, clips, 1)
    np.testing.assert_allclose(pair.logits, (single[0].logits + single[1].logits) / 2, atol=1e-5)
    assert pair.temperature == pytest.approx(float(np.sqrt(single[0].temperature * single[1].temperature)))

    extra = load_manifest(load_config("smoke", ["data.extra_train=[tess]"]).data)
    train, val, test = split_actors(extra, [1], cfg.data.train_split, 0)
    assert len(extra) == len(manifest) + 2800 and (train["corpus"] == "tess").sum() == 2800
    assert set(val["corpus"]) == set(test["corpus"]) == {"ravdess"}
    # the train run's params name the RAVDESS actors of each side; TESS rows have none (make train crashed on them)
    named = {int(a) for side in (train, val) for a in steps.actors_of(side).split(",")}
    assert named == set(smoke_cfg.data.actors) - {1, 11} and steps.actors_of(test) == "1,11"


def test_speed_perturbed_copies_meet_the_cache(tmp_path):
    """train.speed_perturb: one cached encoder pass per factor beside the clips; the training collate draws
    each clip from itself and its copies, evaluation reads the clip as recorded; a head trains on them."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.encoders import load_encoder
    from emotion_core.front_end import FrontEnd
    from emotion_core.head.batching import collate
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.training import fit

    cfg = load_config("smoke", ["train.epochs=1", "train.speed_perturb=[0.9, 1.1]", "train.excerpt_seconds=[]"])
    manifest = load_manifest(cfg.data).groupby("emotion").head(2).reset_index(drop=True)  # 16 real clips
    unpadded = FrontEnd(level_dbfs=cfg.encoder.level_dbfs)  # padded to 4 s, every copy would be 4 s long
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), unpadded, root=tmp_path)
    cache.build(manifest, progress=False)
    clips = cache.attach_variants(manifest, cache.load(manifest, frame_pool=cfg.model.frame_pool), cfg.train,
                                  cfg.model.frame_pool)
    for clip in clips:
        slow, fast = clip.variants
        assert abs(slow.mel.shape[-1] - clip.mel.shape[-1] / 0.9) <= 2 and abs(fast.mel.shape[-1] - clip.mel.shape[-1] / 1.1) <= 2
        assert slow.frame_pool == fast.frame_pool == cfg.model.frame_pool
    assert cache.build(manifest, progress=False, speed=0.9) == {"cached": 16, "encoded": 0}
    assert len(list(tmp_path.glob("*-speed1.1.npz"))) == 16

    rng = np.random.default_rng(0)
    drawn = {int(collate([clips[0]], rng=rng).mel_lengths[0]) for _ in range(30)}
    assert drawn == {c.mel.shape[-1] for c in (clips[0], *clips[0].variants)}
    assert int(collate([clips[0]]).mel_lengths[0]) == clips[0].mel.shape[-1]
    result = fit(clips, manifest["label"].to_numpy(), cfg.model, cfg.train, progress=False)
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])


def test_stats_memo_reuses_the_closed_form_fit_exactly(smoke_run):
    """Tuning fits the stats branch once per fold: a memoised fit gives the very logits of a fresh one."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.head.batching import predict_logits, prepare
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.training import fit

    cfg = load_config("smoke", ["train.epochs=1"])
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    # pooled as the cross-validation and the study pool them: every fit then gets these very objects back
    clips = prepare(cfg.model, EmbeddingCache.of(cfg).load(manifest))
    y = manifest["label"].to_numpy()
    memo: dict = {}
    fresh = predict_logits(fit(clips, y, cfg.model, cfg.train, progress=False).model, clips)
    first = predict_logits(fit(clips, y, cfg.model, cfg.train, progress=False, stats_memo=memo).model, clips)
    again = predict_logits(fit(clips, y, cfg.model, cfg.train, progress=False, stats_memo=memo).model, clips)
    def fits() -> int:
        return len([key for key in memo if key[0] != "features"])

    assert fits() == 1
    assert len(memo) - fits() == len(clips)  # each clip's stats features, computed once
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    other_c = load_config("smoke", ["train.epochs=1", "model.stats_c=0.1"]).model
    fit(clips, y, other_c, cfg.train, progress=False, stats_memo=memo)
    assert fits() == 2 and len(memo) - fits() == len(clips)  # a different C is a different fit, on the same features


#: A tiny search space for the tuning tests (seconds per trial on the smoke subset).
SMOKE_SPACE = ("space:\n"
               "  model.dropout: {type: float, low: 0.1, high: 0.5}\n"
               "  model.branches: {type: categorical, choices: [frames, stats]}\n"
               "  train.epochs: {type: int, low: 1, high: 2}\n")


def test_tuning_resumes(smoke_run, smoke_cfg, tmp_path):
    from emotion_core.research.tuning.study import tune, write_tuned_config

    space = tmp_path / "space.yaml"
    space.write_text("n_trials: 2\nstartup_trials: 2\nfolds: [1, 4]\nconfirm_seeds: [1]\n" + SMOKE_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tune(smoke_cfg, space, storage=storage, progress=False)
    # successive halving: the first trial always goes on; the second only if it ranks first after fold 1
    assert first["n_trials"] == 2 and first["complete"] >= 1 and first["complete"] + first["pruned"] == 2
    again = tune(smoke_cfg, space, n_trials=3, storage=storage, progress=False)  # resumes: one more trial
    assert again["n_trials"] == 3 and again["fold_fits_this_session"] >= 1 and again["fold_fits"] >= 3 and again["fold_fit_seconds_mean"] > 0
    # the best and the base config re-trained with seed 1, once per best trial (kept in the study)
    conf = again["confirmation"]
    assert conf["best_trial"] == again["best"]["trial"] and conf["seeds"] == [1]
    assert len(conf["best"]) == len(conf["base"]) == 1 and 0 <= conf["best"][0] <= 1 and 0 <= conf["base"][0] <= 1
    report = (Path(os.environ["EMOTION_REPORTS_DIR"]) / "smoke" / "tune.md").read_text()
    assert "Re-measured with `train.seed` 1" in report
    assert "3 trials" in report and report.count("| complete |") + report.count("| pruned |") == 3
    tuned = write_tuned_config(again, "smoke", tmp_path / "tuned.yaml")
    from emotion_core.config import load_config

    cfg = load_config(tuned)
    assert cfg.model.dropout == pytest.approx(again["best"]["params"]["model.dropout"])


def test_tuning_workers_share_one_study(smoke_run, smoke_cfg, tmp_path):
    """Two worker processes on one sqlite study: together they stop at the target, and every trial is an
    MLflow run nested under the one study run."""
    import mlflow

    from emotion_core.research import tracking
    from emotion_core.research.tuning.study import tune

    space = tmp_path / "space.yaml"
    space.write_text("n_trials: 4\nstartup_trials: 4\nworkers: 2\nfolds: [1, 4]\nconfirm_seeds: [1]\n" + SMOKE_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tune(smoke_cfg, space, storage=storage, progress=False)
    finished = result["complete"] + result["pruned"]
    assert finished == result["n_trials"] == 4 and result["unfinished"] == 0  # the target exactly, across workers
    assert result["fold_fits_this_session"] == result["fold_fits"] >= finished
    # wall clock is the union of the trials' intervals: at most their summed time (less when workers overlap)
    assert result["workers"] == 2 and 0 < result["study_seconds"] <= result["trial_seconds"]
    # the seed re-check ran in the workers too, and says how long it took
    conf = result["confirmation"]
    assert len(conf["best"]) == len(conf["base"]) == 1 and 0 < conf["seconds"] < result["seconds"]
    tracking.setup("tune")
    study_run = mlflow.search_runs(filter_string="tags.kind = 'optuna'", order_by=["start_time DESC"],
                                   max_results=1, output_format="list")[0]
    assert study_run.data.tags["workers"] == "2"
    trials = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{study_run.info.run_id}'", output_format="list")
    assert len(trials) == finished
    assert {t.data.tags["worker"] for t in trials} <= {"0", "1"}
    # a later session on the complete study runs nothing, so the report still says how its trials ran
    again = tune(smoke_cfg, space, storage=storage, progress=False, workers=1)
    assert again["fold_fits_this_session"] == 0 and again["workers"] == 2


def test_recording_condition_copies_meet_the_cache(tmp_path):
    """train.augment: each condition one cached encoder pass beside the clip (degraded the same way every run,
    seeded by the clip), attached as a training variant like the speed copies."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.encoders import load_encoder
    from emotion_core.front_end import FrontEnd
    from emotion_core.research.cache import EmbeddingCache

    cfg = load_config("smoke", ["train.augment=[babble-10db, telephone]", "train.excerpt_seconds=[]"])
    manifest = load_manifest(cfg.data).groupby("emotion").head(1).reset_index(drop=True)  # 8 real clips
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), FrontEnd.of(cfg.encoder), root=tmp_path)
    cache.build(manifest, progress=False)
    clips = cache.attach_variants(manifest, cache.load(manifest, frame_pool=cfg.model.frame_pool), cfg.train,
                                  cfg.model.frame_pool)
    assert all(len(c.variants) == 2 and c.variants[0].hidden.shape == c.hidden.shape for c in clips)
    assert not np.allclose(clips[0].variants[0].hidden.float(), clips[0].hidden.float())
    assert len(list(tmp_path.glob("*-babble-10db.npz"))) == len(list(tmp_path.glob("*-telephone.npz"))) == 8
    first = next(tmp_path.glob("*-telephone.npz")).read_bytes()
    for f in tmp_path.glob("*-telephone.npz"):
        f.unlink()
    cache.build(manifest, progress=False, condition="telephone")  # rebuilt: the same degradation, the same file
    assert any(f.read_bytes() == first for f in tmp_path.glob("*-telephone.npz"))


def test_word_length_copies_meet_the_cache(tmp_path):
    """train.excerpt_seconds: one cached encoder pass of a 0.5-1.2 s stretch of each clip's speech (seeded by the
    clip), attached as a training variant; without the front end's padding, each copy is that long."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.encoders import load_encoder
    from emotion_core.front_end import FrontEnd
    from emotion_core.research.cache import EmbeddingCache

    cfg = load_config("smoke", ["train.excerpt_seconds=[0.5, 1.2]"])
    manifest = load_manifest(cfg.data).groupby("emotion").head(1).reset_index(drop=True)  # 8 real clips
    unpadded = FrontEnd(level_dbfs=cfg.encoder.level_dbfs)
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), unpadded, root=tmp_path)
    cache.build(manifest, progress=False)
    clips = cache.attach_variants(manifest, cache.load(manifest, frame_pool=cfg.model.frame_pool), cfg.train,
                                  cfg.model.frame_pool)
    mel_per_second = 100  # the cache's log-mel rate (the head pools it later)
    for clip in clips:
        (word,) = clip.variants
        assert 0.5 * mel_per_second - 2 <= word.mel.shape[-1] <= 1.2 * mel_per_second + 2 < clip.mel.shape[-1]
        assert word.frame_pool == clip.frame_pool
    files = sorted(tmp_path.glob("*-excerpt0.5-1.2s.npz"))
    assert len(files) == 8
    first = files[0].read_bytes()
    files[0].unlink()
    assert cache.build(manifest, progress=False, excerpt=(0.5, 1.2)) == {"cached": 7, "encoded": 1}
    assert files[0].read_bytes() == first  # the same clip, the same stretch

    # The stats branch's closed-form fit reads the copies as training clips with their clip's label: the same
    # logistic regression as on clips and copies given side by side.
    from dataclasses import replace

    import torch

    from emotion_core.research.training import fit
    stats_only = cfg.model.model_copy(update={"use_frames_branch": False, "use_mel_branch": False})
    labels = manifest["label"].to_numpy()
    with_copies = fit(clips, labels, stats_only, cfg.train, progress=False).model.stats.linear.weight
    side_by_side = fit([*(replace(c, variants=()) for c in clips), *(c.variants[0] for c in clips)], np.concatenate([labels, labels]),
                       stats_only, cfg.train, progress=False).model.stats.linear.weight
    alone = fit([replace(c, variants=()) for c in clips], labels, stats_only, cfg.train, progress=False).model.stats.linear.weight
    assert torch.equal(with_copies, side_by_side) and not torch.allclose(with_copies, alone)


def test_copies_only_of_the_named_corpora(tmp_path):
    """train.copy_corpora: only those corpora's clips get the training copies (TESS' single words need no
    word-length stretch); the others train as recorded, and their copies are never encoded."""
    import pandas as pd

    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.data.corpora import CORPORA
    from emotion_core.encoders import load_encoder
    from emotion_core.front_end import FrontEnd
    from emotion_core.research.cache import EmbeddingCache

    cfg = load_config("smoke", ["train.excerpt_seconds=[0.5, 1.2]", "train.copy_corpora=[ravdess]"])
    ravdess = load_manifest(cfg.data).groupby("emotion").head(1).head(3)
    tess = CORPORA["tess"].read().groupby("emotion").head(1).head(2)
    manifest = pd.concat([tess, ravdess], ignore_index=True)[["path", "clip_id", "corpus"]]
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), FrontEnd.of(cfg.encoder), root=tmp_path)
    cache.build(manifest, progress=False)
    clips = cache.attach_variants(manifest, cache.load(manifest, frame_pool=cfg.model.frame_pool), cfg.train,
                                  cfg.model.frame_pool)
    assert [len(c.variants) for c in clips] == [0, 0, 1, 1, 1]
    assert len(list(tmp_path.glob("*-excerpt0.5-1.2s.npz"))) == 3
    with pytest.raises(ValueError, match="copy_corpora"):
        cache.attach_variants(manifest, clips, load_config("smoke", ["train.excerpt_seconds=[0.5, 1.2]",
                                                                     "train.copy_corpora=[turev]"]).train, 1)


def test_the_stats_branch_learns_from_corpora_as_the_cnn_does(tmp_path):
    """model.stats_fit=corpus_lr: with TESS beside RAVDESS the closed-form fit masks and balances (another fit
    than `lr`), with train.mask_loss=false it only balances (a third fit); with one corpus it is `lr`, exactly."""
    import pandas as pd
    import torch

    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.data.corpora import CORPORA
    from emotion_core.encoders import load_encoder
    from emotion_core.front_end import FrontEnd
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.training import corpus_arguments, fit

    cfg = load_config("smoke", ["train.corpus_sampling=balanced", "train.mask_loss=true"])
    ravdess = load_manifest(cfg.data).groupby("emotion").head(1)
    manifest = pd.concat([ravdess, CORPORA["tess"].read().groupby("emotion").head(1)], ignore_index=True)
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), FrontEnd.of(cfg.encoder), root=tmp_path)
    cache.build(manifest, progress=False)
    clips, labels = cache.load(manifest, frame_pool=cfg.model.frame_pool), manifest["label"].to_numpy()
    stats_only = {"use_frames_branch": False, "use_mel_branch": False}

    def weight(stats_fit: str, rows: slice, train=cfg.train) -> torch.Tensor:
        model_cfg = cfg.model.model_copy(update={**stats_only, "stats_fit": stats_fit})
        return fit(clips[rows], labels[rows], model_cfg, train, progress=False,
                   **corpus_arguments(manifest.iloc[rows])).model.stats.linear.weight

    assert torch.equal(weight("corpus_lr", slice(0, len(ravdess))), weight("lr", slice(0, len(ravdess))))
    masked, as_one = weight("corpus_lr", slice(None)), weight("lr", slice(None))
    assert (masked - as_one).norm() > 0.01 * as_one.norm()
    balanced = weight("corpus_lr", slice(None), cfg.train.model_copy(update={"mask_loss": False}))
    assert min((balanced - masked).norm(), (balanced - as_one).norm()) > 0.01 * as_one.norm()
