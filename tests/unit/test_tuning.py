"""The tuning study without data: the typed search space (tune.yaml), the base config as the study's first point,
study names, and the fold-halving pruner. Studies on the real smoke subset: tests/integration/test_cv.py."""

import pytest


def test_a_new_study_starts_from_the_base_config():
    from emotion_core.config import EXPERIMENTS_DIR, ExperimentConfig, _deep_merge, load_config
    from emotion_core.research.tuning.space import base_params, load_tune_spec, sample

    space = load_tune_spec(EXPERIMENTS_DIR / "tune.yaml").space
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
    from emotion_core.config import EXPERIMENTS_DIR, load_config
    from emotion_core.research.tuning.space import load_tune_spec
    from emotion_core.research.tuning.study import study_name

    spec = load_tune_spec(EXPERIMENTS_DIR / "tune.yaml")
    name = study_name(load_config("default"), spec)
    assert name.startswith("tune-default-") and name == study_name(load_config("default"), spec.model_copy(update={"workers": 1}))
    assert study_name(load_config("default", ["model.mel_pool=1"]), spec) != name
    assert study_name(load_config("default"), spec.model_copy(update={"space": {k: v for k, v in spec.space.items() if k != "train.lr"}})) != name


def test_fold_halving_keeps_a_strict_quota_and_breaks_ties_by_log_loss():
    """At a rung, at most max(1, n // reduction_factor) trials go on: equal UAs (a fold's UA takes few values) are
    ordered by log-loss instead of all passing, as they did with optuna's SuccessiveHalvingPruner."""
    import optuna

    from emotion_core.research.tuning.pruner import BASE_ATTR, TIEBREAK_ATTR, FoldHalvingPruner

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


def test_tune_spec_is_typed_and_branches_set_three_switches(tmp_path):
    """tune.yaml is a TuneSpec: a misspelt key or an unknown parameter type is an error, not silently ignored;
    "model.branches" samples into the three use_*_branch switches."""
    import optuna
    import pydantic

    from emotion_core.research.tuning.space import load_tune_spec, sample

    path = tmp_path / "tune.yaml"
    path.write_text("space:\n  model.branches: {type: categorical, choices: [frames, frames+stats]}\n"
                    "  model.dropout: {type: float, low: 0.1, high: 0.5}\n")
    spec = load_tune_spec(path)
    assert (spec.n_trials, spec.rungs, spec.reduction_factor, spec.workers, spec.folds) == (50, [1, 2], 4, 1, None)
    trial = optuna.trial.FixedTrial({"model.branches": "frames+stats", "model.dropout": 0.2})
    assert sample(trial, spec.space) == {"model": {"dropout": 0.2, "use_frames_branch": True, "use_mel_branch": False,
                                                   "use_stats_branch": True}}
    for bad in ("n_trial: 3\nspace: {}\n", "space:\n  model.dropout: {type: uniform, low: 0.1, high: 0.5}\n",
                "workers: 0\nspace: {}\n"):
        path.write_text(bad)
        with pytest.raises(pydantic.ValidationError):
            load_tune_spec(path)


def test_a_retried_failure_counts_once_and_a_team_url_loses_its_password(tmp_path):
    import optuna

    from emotion_core.research.tuning.storage import WORKER_ATTR, finished_count, open_storage, redacted, unsettled

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_seconds=1)
    study = optuna.create_study(storage=storage, study_name="s")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.create_trial(value=0.5, params={"x": 0.5}, distributions=dist))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, params={"x": 0.2}, distributions=dist))
    assert finished_count(study) == 2  # a failure nobody retried is finished for good
    failed = study.trials[1]
    storage.get_heartbeat_stale_trial_callback()(study, failed)  # what fail_stale_trials does for a dead worker's trial
    [retry] = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == failed.number
    assert finished_count(study) == 1 and unsettled(study) == [retry]  # counted again once the retry runs
    # a RUNNING trial from before heartbeats (no worker attribute) is not waited for; a worker's is
    legacy = study.ask()  # takes the waiting retry
    assert legacy.number == retry.number and unsettled(study) == []
    legacy.set_user_attr(WORKER_ATTR, "host:1")
    assert [t.number for t in unsettled(study)] == [retry.number]

    assert redacted("postgresql://tuner:s3cret@db.lan:5432/optuna") == "postgresql://tuner@db.lan:5432/optuna"
    assert redacted("sqlite:///mlruns/optuna.db") == "sqlite:///mlruns/optuna.db"



def test_two_workers_asking_for_the_last_slot_at_once_keep_one_trial(tmp_path):
    """The race of a distributed study: the target is one trial short, two workers ask in the same instant. The
    lower-numbered trial keeps the slot; the other is surplus (closed unrun, never counted). Queued trials
    (enqueued, or a dead worker's retry) are part of the target and never surplus."""
    import optuna

    from emotion_core.research.tuning.storage import SURPLUS_ATTR, finished_count, is_surplus, open_storage

    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"), study_name="s")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.add_trial(optuna.create_trial(value=0.5, params={"x": 0.5}, distributions=dist))
    first, second = study.ask(), study.ask()  # both workers saw 1 finished of 2 and asked
    assert not is_surplus(study, first.number, 2) and is_surplus(study, second.number, 2)
    study.tell(first, 0.7)
    second.set_user_attr(SURPLUS_ATTR, True)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    assert finished_count(study) == 2  # the target, exactly: the surplus trial is not counted
    study.enqueue_trial({"x": 0.1})
    queued = study.ask()
    assert not is_surplus(study, queued.number, 2)  # queued: runs even though the target is reached
