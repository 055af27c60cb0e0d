"""Cross-validation, calibration and tuning on the real smoke subset (6 actors, 3 epochs)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from emotion_core import calibration


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, 2000)
    logits = rng.normal(size=(2000, 8))
    logits[np.arange(2000), labels] += 1.5  # ~60 % accurate...
    logits *= 4.0  # ...but far too confident
    t = calibration.fit_temperature(logits, labels)
    assert t > 2.0
    before = calibration.ece(calibration.softmax(logits), labels)
    after = calibration.ece(calibration.softmax(logits, t), labels)
    assert after < before / 3 and after < 0.05


def test_crossval_smoke(smoke_run, smoke_cfg):
    from emotion_core import cv

    import torch

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
    from emotion_core import cv
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest, split_actors
    from emotion_core.embeddings import EmbeddingCache
    from emotion_core.encoders import load_encoder

    cfg = load_config("smoke", ["train.epochs=1", "model.use_stats_branch=false"])
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    clips = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch")).load(manifest, frame_pool=cfg.model.frame_pool)
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


def test_speed_perturbed_copies_meet_the_cache(tmp_path):
    """train.speed_perturb: one cached encoder pass per factor beside the clips; the training collate draws
    each clip from itself and its copies, evaluation reads the clip as recorded; a head trains on them."""
    from emotion_core.config import load_config
    from emotion_core.data import load_manifest
    from emotion_core.embeddings import EmbeddingCache
    from emotion_core.encoders import load_encoder
    from emotion_core.training import collate, fit

    cfg = load_config("smoke", ["train.epochs=1", "train.speed_perturb=[0.9, 1.1]"])
    manifest = load_manifest(cfg.data).groupby("emotion").head(2).reset_index(drop=True)  # 16 real clips
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"), root=tmp_path)
    cache.build(manifest, progress=False)
    clips = cache.attach_speed_variants(manifest, cache.load(manifest, frame_pool=cfg.model.frame_pool),
                                        cfg.train.speed_perturb, cfg.model.frame_pool)
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
    from emotion_core.embeddings import EmbeddingCache
    from emotion_core.encoders import load_encoder
    from emotion_core.training import fit, predict_logits, prepare

    cfg = load_config("smoke", ["train.epochs=1"])
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    # pooled as the cross-validation and the study pool them: every fit then gets these very objects back
    clips = prepare(cfg.model, EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch")).load(manifest))
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


def test_a_new_study_starts_from_the_base_config():
    import yaml

    from emotion_core.config import EXPERIMENTS_DIR, ExperimentConfig, _deep_merge, load_config
    from emotion_core.tuning import base_params, sample

    space = yaml.safe_load((EXPERIMENTS_DIR / "tune.yaml").read_text())["space"]
    base = load_config("default")
    params = base_params(base, space)
    assert params is not None and set(params) == set(space)
    import optuna

    # the enqueued point, sampled back into a config, is the default config itself
    again = ExperimentConfig.model_validate(_deep_merge(base.model_dump(), sample(optuna.trial.FixedTrial(params), space)))
    assert again == base
    assert base_params(load_config("default", ["train.epochs=7"]), space) is None  # off the int grid: not enqueued
    assert base_params(load_config("default", ["model.frame_pool=3"]), space) is None


def test_a_changed_config_or_space_starts_a_new_study():
    """A study is named by what defines its objective, so `make tune` never resumes one across a change."""
    import yaml

    from emotion_core.config import EXPERIMENTS_DIR, load_config
    from emotion_core.tuning import study_name

    spec = yaml.safe_load((EXPERIMENTS_DIR / "tune.yaml").read_text())
    name = study_name(load_config("default"), spec)
    assert name.startswith("tune-default-") and name == study_name(load_config("default"), dict(spec, workers=1))
    assert study_name(load_config("default", ["model.mel_pool=1"]), spec) != name
    assert study_name(load_config("default"), dict(spec, space={k: v for k, v in spec["space"].items() if k != "train.lr"})) != name


def test_fold_halving_keeps_a_strict_quota_and_breaks_ties_by_log_loss():
    """At a rung, at most max(1, n // reduction_factor) trials go on: equal UAs (a fold's UA takes few values) are
    ordered by log-loss instead of all passing, as they did with optuna's SuccessiveHalvingPruner."""
    import optuna

    from emotion_core.tuning import BASE_ATTR, TIEBREAK_ATTR, FoldHalvingPruner

    study = optuna.create_study(direction="maximize", pruner=FoldHalvingPruner([1, 2], reduction_factor=4))

    def goes_on(ua: float, loss: float, base: bool = False) -> bool:
        """A new trial's verdict after its first fold."""
        trial = study.ask()
        if base:
            trial.set_user_attr(BASE_ATTR, True)
        trial.set_user_attr(TIEBREAK_ATTR.format(1), loss)
        trial.report(ua, 1)
        return not trial.should_prune()

    assert goes_on(0.75, 1.0)  # alone at the rung: the best so far
    assert not goes_on(0.70, 0.5)  # 2 trials: quota 1, and one ranks above it
    assert goes_on(0.75, 0.9)  # the same UA as the first, lower log-loss: ranks first
    assert not goes_on(0.75, 1.1)  # the same UA, higher log-loss: two rank above it (4 trials, quota 1)
    for ua in (0.60, 0.61, 0.62, 0.63):
        goes_on(ua, 1.0)
    assert goes_on(0.75, 0.95)  # 9 trials, quota 2: only the trial with loss 0.9 ranks above it
    assert not goes_on(0.74, 0.1)
    assert goes_on(0.5, 3.0, base=True)  # the base config's trial always runs to the end
    trial = study.ask()  # a fold count that is not a rung never prunes
    for s in (1, 2, 3):
        trial.report(0.9 if s < 3 else 0.1, s)
    assert not FoldHalvingPruner([1, 2], 4).prune(study, study.trials[-1])


#: A tiny search space for the tuning tests (seconds per trial on the smoke subset).
SMOKE_SPACE = ("space:\n"
               "  model.dropout: {type: float, low: 0.1, high: 0.5}\n"
               "  model.branches: {type: categorical, choices: [frames, stats]}\n"
               "  train.epochs: {type: int, low: 1, high: 2}\n")


def test_tuning_resumes(smoke_run, smoke_cfg, tmp_path):
    from emotion_core.tuning import tune, write_tuned_config

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

    from emotion_core import tracking
    from emotion_core.tuning import tune

    space = tmp_path / "space.yaml"
    space.write_text("n_trials: 4\nstartup_trials: 4\nworkers: 2\nfolds: [1, 4]\nconfirm_seeds: [1]\n" + SMOKE_SPACE)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tune(smoke_cfg, space, storage=storage, progress=False)
    finished = result["complete"] + result["pruned"]
    assert 4 <= finished <= 5 and result["unfinished"] == 0  # a worker may finish the trial it had started
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
