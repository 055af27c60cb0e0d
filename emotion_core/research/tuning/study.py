"""Optuna search over the head and its training, objective = actor-held-out CV UA on the embedding cache.

TPE sampler + successive halving over folds (`FoldHalvingPruner`: at each rung, e.g. after 1 and 2
folds, a trial's running fold mean must rank in the top 1/reduction_factor of the trials that reached
the same fold count); every trial is a nested MLflow run; the study is stored in sqlite
(`mlruns/optuna.db`) so an interrupted search resumes where it stopped, and worker processes can share
it (one trial each at a time) — or in PostgreSQL, where `join` workers on other hosts take trials from the
same study (storage.py: heartbeats, retries of dead workers' trials).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import torch
import yaml

from emotion_core.config import EXPERIMENTS_DIR, ExperimentConfig, _deep_merge, fingerprint, stable_hash
from emotion_core.data import EMOBOX_FOLDS, load_manifest
from emotion_core.research import cv, tracking
from emotion_core.research.cache import EmbeddingCache
from emotion_core.research.metrics import summary
from emotion_core.research.top_layer_fit import source_state
from emotion_core.research.tuning.pruner import BASE_ATTR, TIEBREAK_ATTR, FoldHalvingPruner
from emotion_core.research.tuning.report import write_report
from emotion_core.research.tuning.space import TuneSpec, base_params, choices, load_tune_spec, sample
from emotion_core.research.tuning.storage import (
    SURPLUS_ATTR,
    WORKER_ATTR,
    SurplusTrial,
    default_storage,
    finished_count,
    is_surplus,
    open_storage,
    redacted,
    unsettled,
)


def study_name(base: ExperimentConfig, spec: TuneSpec) -> str:
    """`tune-<config>-<fingerprint>`: the fingerprint covers what defines the objective (the base config, the
    search space, the folds), so `make tune` resumes a study only while its trials stay comparable; after a
    change to either it starts a new one instead of ranking trials measured two ways."""
    defining = {"base": fingerprint(base), **spec.defining()}
    return f"tune-{base.name}-{stable_hash(defining, 8)}"


def _study(base: ExperimentConfig, spec: TuneSpec, storage: str, worker: int = 0) -> Any:
    """The study as every worker opens it: created on first use, resumed after. Each worker's TPE gets its
    own seed (the same seed would draw the same random start-up trials in both)."""
    return optuna.create_study(
        study_name=study_name(base, spec), load_if_exists=True, direction="maximize",
        storage=open_storage(storage, spec.heartbeat_seconds, spec.max_retries),
        sampler=optuna.samplers.TPESampler(seed=base.train.seed + worker, n_startup_trials=spec.startup_trials),
        # The resource is folds (step = folds run). Rungs compare the same folds, so fold-to-fold spread cancels.
        pruner=FoldHalvingPruner(spec.rungs, spec.reduction_factor),
    )


def tune(base: ExperimentConfig, tune_file: Path, n_trials: int | None = None, storage: str | None = None,
         progress: bool = True, timeout_minutes: float | None = None, render_only: bool = False,
         workers: int | None = None) -> dict[str, Any]:
    """Run (or resume) the study until it holds `n_trials` finished trials or `timeout_minutes` pass (the
    trials running then complete). `workers` processes (default: the space file's `workers`, else 1) run
    trials side by side on the shared sqlite study, each with an equal share of the CPU threads. The
    result says how long a fold fit took, so the cost of the full study on this machine is printed rather
    than guessed. `render_only`: run nothing, rewrite the report from the stored study (e.g. after
    stopping a study by hand)."""
    spec = load_tune_spec(tune_file)
    space, n_trials = spec.space, n_trials or spec.n_trials
    workers = max(1, workers or spec.workers)
    folds = spec.folds or list(EMOBOX_FOLDS)
    storage = storage or default_storage(spec.storage)
    study = _study(base, spec, storage)
    if render_only:
        return write_report(study, base, spec, folds, redacted(storage), n_trials, timeout_minutes, 0.0, 0)
    if not study.trials and (start_point := base_params(base, space)) is not None:
        study.enqueue_trial(start_point, user_attrs={BASE_ATTR: True})
    if finished_count(study) < n_trials:  # trials will run: the report's wall time depends on how many side by side
        study.set_user_attr("workers", workers)
    tracking.setup("tune")
    start = time.perf_counter()
    timeout = timeout_minutes * 60 if timeout_minutes else None
    with mlflow.start_run(run_name=f"tune-{base.name}") as parent:
        mlflow.set_tags({"config": base.name, "kind": "optuna", "study": study.study_name, "workers": workers})
        if finished_count(study) >= n_trials:
            fold_fits = 0  # nothing left to run (e.g. only the confirmation below)
        elif workers == 1:
            fold_fits = _run_trials(base, spec, folds, storage, parent.info.run_id, n_trials, timeout, progress)
        else:
            # Processes, not threads: the fit loop holds the GIL between its (small) ops. Each worker loads
            # the cache itself (spawn: no state inherited from this process).
            threads = max(1, torch.get_num_threads() // workers)
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers) as pool:
                fold_fits = sum(pool.starmap(_run_trials, [
                    (base, spec, folds, storage, parent.info.run_id, n_trials, timeout, False, w, threads)
                    for w in range(workers)]))
        study = _study(base, spec, storage)  # reload: the workers' trials
        seeds = spec.confirm_seeds
        done = finished_count(study) >= n_trials  # not after a time-boxed part
        if seeds and done and study.user_attrs.get("confirmation", {}).get("best_trial") != study.best_trial.number:
            # kept in the study, so --render and later sessions show it without re-running it
            began = time.perf_counter()
            conf = confirm(base, sample(optuna.trial.FixedTrial(study.best_params), space), folds, seeds, workers)
            study.set_user_attr("confirmation", {"best_trial": study.best_trial.number, **conf,
                                                 "seconds": time.perf_counter() - began})
        seconds = time.perf_counter() - start
        result = write_report(study, base, spec, folds, redacted(storage), n_trials, timeout_minutes, seconds, fold_fits)
        mlflow.log_metrics({"best_cv_ua": study.best_value, "seconds": seconds, "study_seconds": result["study_seconds"]})
        mlflow.log_dict(result, "tune.json")
        for f in result["figures"]:
            mlflow.log_artifact(str(f), "figures")
        mlflow.set_tag("parent_run", parent.info.run_id)
    return result


def _load_pools(base: ExperimentConfig, factors: list[int], adapt_layers: list[int] = ()) -> tuple[Any, dict[int, list], dict[int, list]]:
    """The manifest, the cached corpus pooled to each frame rate in `factors`, and for each adapted-layer count
    in `adapt_layers` (0 = none) the encoder-rate state those layers read (`top_layer_fit.source_state`); one
    pass over the cache."""
    manifest = load_manifest(base.data).reset_index(drop=True)
    pools: dict[int, list] = {p: [] for p in factors}
    sources: dict[int, list] = {n: [] for n in adapt_layers if n}
    cache = EmbeddingCache.of(base)
    for clip in cache.iter(manifest):
        # The log-mel is pooled here too (mel_pool is not searched): every fit then gets these very clip objects
        # back from `training.prepare`, and the stats memo is keyed by them.
        for p in factors:
            pools[p].append(clip.pooled(p, base.model.mel_pool))
        for n, rows in sources.items():
            rows.append(source_state(clip, base.adapt.model_copy(update={"layers": n})))
    return manifest, {p: cache.attach_variants(manifest, clips, base.train, p) for p, clips in pools.items()}, sources


def confirm(base: ExperimentConfig, best_overrides: dict[str, Any], folds: list[int], seeds: list[int],
            workers: int = 1) -> dict[str, Any]:
    """CV UA of the base config and of the best trial's config, each re-trained with other seeds (a new
    inner validation split and initialisation). The best of many trials is selected on its own noise
    (seed, thread count, float rounding); re-measuring both the same new way shows how much of its lead is
    real. With `workers` > 1 the (config, seed) runs go to that many processes, as the trials did."""
    configs = {"base": base, "best": ExperimentConfig.model_validate(_deep_merge(base.model_dump(), best_overrides))}
    runs = [(name, seed) for name in configs for seed in seeds]
    args = [(base, configs[name].model_copy(update={"train": configs[name].train.model_copy(update={"seed": seed})}), folds)
            for name, seed in runs]
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            uas = pool.starmap(_cv_ua, [(*a, threads) for a in args], chunksize=1)
    else:
        try:
            uas = [_cv_ua(*a) for a in args]
        finally:
            _LOADED.clear()  # the corpus, held for the runs above only
    out: dict[str, Any] = {"seeds": list(seeds), **{name: [] for name in configs}}
    for (name, _), ua in zip(runs, uas):
        out[name].append(ua)
    return out


#: This process's corpus per frame rate and the stats memo they share (`_cv_ua`): loaded once, not per run.
_LOADED: dict[Any, Any] = {}


def _cv_ua(base: ExperimentConfig, cfg: ExperimentConfig, folds: list[int], threads: int | None = None) -> float:
    """Mean CV UA of `cfg` over `folds` (base: where the corpus comes from)."""
    if threads:
        torch.set_num_threads(threads)
    key = (cfg.model.frame_pool, cfg.adapt.layers)
    if key not in _LOADED:
        manifest, pools, sources = _load_pools(base, [key[0]], [key[1]])
        _LOADED[key] = (manifest, pools[key[0]], sources.get(key[1]))
    manifest, clips, sources = _LOADED[key]
    memo = _LOADED.setdefault("stats_memo", {})  # base and best share the stats fit where seed, C and rate agree
    y = manifest["label"].to_numpy()
    return float(np.mean([summary(y[r.test_index], r.logits.argmax(-1))["ua"]
                          for r in (cv.run_fold(cfg, manifest, clips, f, stats_memo=memo, sources=sources) for f in folds)]))


def _run_trials(base: ExperimentConfig, spec: TuneSpec, folds: list[int], storage: str, parent_run_id: str,
                n_trials: int, timeout: float | None, progress: bool, worker: int = 0, threads: int | None = None) -> int:
    """One worker: trials until the study holds `n_trials` finished ones (counted across workers) or
    `timeout` seconds pass. Every trial is an MLflow run nested under `parent_run_id`. Returns the fold
    fits it ran."""
    if threads:
        torch.set_num_threads(threads)
    space = spec.space
    study = _study(base, spec, storage, worker)
    manifest, pools, sources = _load_pools(base, choices(space, "model.frame_pool", base.model.frame_pool),
                                           choices(space, "adapt.layers", base.adapt.layers))
    y = manifest["label"].to_numpy()
    tracking.setup("tune")
    fold_fits = 0
    stats_memo: dict = {}  # the stats branch's closed-form fit per (fold rows, C, layers, frame rate): once, not per trial

    def objective(trial: optuna.Trial) -> float:
        nonlocal fold_fits
        if is_surplus(study, trial.number, n_trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"the study's {n_trials} trials were covered when trial {trial.number} started")
        overrides = sample(trial, space)
        cfg = ExperimentConfig.model_validate(_deep_merge(base.model_dump(), overrides))
        clips = pools[cfg.model.frame_pool]
        # In-process (one worker) the parent run is active here; in a worker process it is not.
        with mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent_run_id,
                              nested=mlflow.active_run() is not None):
            mlflow.log_params(trial.params)
            mlflow.set_tag("worker", worker)
            trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")  # who runs it (any host)
            uas, losses = [], []
            for fold in folds:
                r = cv.run_fold(cfg, manifest, clips, fold, stats_memo=stats_memo, sources=sources.get(cfg.adapt.layers))
                fold_fits += 1
                uas.append(summary(y[r.test_index], r.logits.argmax(-1))["ua"])
                # log-loss of the served (calibrated) probabilities
                losses.append(float(torch.nn.functional.cross_entropy(torch.from_numpy(r.logits / r.temperature),
                                                                      torch.from_numpy(y[r.test_index]))))
                trial.set_user_attr(TIEBREAK_ATTR.format(len(uas)), float(np.mean(losses)))  # the pruner's tie-break
                trial.report(float(np.mean(uas)), len(uas))  # step = folds run: the pruner's resource
                mlflow.log_metric("running_cv_ua", float(np.mean(uas)), step=len(uas))
                if trial.should_prune():
                    mlflow.set_tag("state", "pruned")
                    raise optuna.TrialPruned()
            mlflow.log_metrics({"cv_ua_mean": float(np.mean(uas)), "cv_ua_std": float(np.std(uas))})
            return float(np.mean(uas))

    def covered(study: Any) -> int:
        """Finished trials plus those other workers are running (they finish them, or, dead, get them retried),
        every RUNNING one, even one whose worker has not tagged it yet (between ask and the objective)."""
        return finished_count(study) + len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    def stop_at_target(study: Any, _trial: Any) -> None:  # checked before every next ask, not once per optimize()
        if covered(study) >= n_trials:
            study.stop()

    deadline = time.monotonic() + timeout if timeout else None
    while deadline is None or time.monotonic() < deadline:
        if (remaining := n_trials - covered(study)) > 0:
            left = deadline - time.monotonic() if deadline else None
            study.optimize(objective, n_trials=remaining, timeout=left, show_progress_bar=progress,
                           callbacks=[stop_at_target], catch=(SurplusTrial,))
            continue
        # The target is covered, but trials may still be running: another worker's (it finishes it), or a dead
        # worker's, which stays RUNNING until its heartbeat is stale; failing it here re-queues it (WAITING),
        # and this loop runs the retry. The study is settled when nothing is running or waiting.
        optuna.storages.fail_stale_trials(study)
        if not (left := unsettled(study)):
            break
        if any(t.state == optuna.trial.TrialState.WAITING for t in left):
            study.optimize(objective, n_trials=1, show_progress_bar=False, catch=(SurplusTrial,))
            continue
        time.sleep(min(5.0, spec.heartbeat_seconds))
    return fold_fits


def join(base: ExperimentConfig, tune_file: Path, storage: str | None = None, worker: int | None = None,
         timeout_minutes: float | None = None, progress: bool = True) -> int:
    """`make tune-worker`: this process takes trials from the shared study (PostgreSQL) until it holds the
    spec's `n_trials` finished ones and none is left running or waiting, then exits; the report and the seed
    re-check stay with `make tune`. Its cache (`make embed` on this host, or a shared cache dir) must hold
    the corpus. Trials are MLflow runs under a parent run of this worker's. Returns the fold fits it ran."""
    spec = load_tune_spec(tune_file)
    storage = storage or default_storage(spec.storage)
    # Each worker's TPE gets its own seed; on many hosts the index comes from WORKER=, else host and pid.
    worker = worker if worker is not None else int(stable_hash([socket.gethostname(), os.getpid()], 6), 16)
    tracking.setup("tune")
    with mlflow.start_run(run_name=f"tune-{base.name}-worker-{socket.gethostname()}") as parent:
        mlflow.set_tags({"config": base.name, "kind": "optuna-worker", "study": study_name(base, spec),
                         "storage": redacted(storage)})
        return _run_trials(base, spec, spec.folds or list(EMOBOX_FOLDS), storage, parent.info.run_id, spec.n_trials,
                           timeout_minutes * 60 if timeout_minutes else None, progress, worker)


def write_tuned_config(result: dict[str, Any], base_name: str, path: Path) -> Path:
    """experiments/tuned.yaml: `base: <base>.yaml` + the best trial's overrides (the tuned model's config)."""
    body = {"base": os.path.relpath(EXPERIMENTS_DIR / f"{base_name}.yaml", path.parent), **result["best_overrides"]}
    header = f"# Written by `make tune` (study {result['study']}, best CV UA {result['best']['value']:.4f}).\n"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path
