"""Optuna search over the head and its training, objective = actor-held-out CV UA on the embedding cache.

TPE sampler + successive halving over folds (`FoldHalvingPruner`: at each rung, e.g. after 1 and 2
folds, a trial's running fold mean must rank in the top 1/reduction_factor of the trials that reached
the same fold count); every trial is a nested MLflow run; the study is stored in sqlite
(`mlruns/optuna.db`) so an interrupted search resumes where it stopped, and worker processes can share
it (one trial each at a time).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from emotion_core.config import MLRUNS_DIR, ExperimentConfig, _deep_merge, fingerprint, load_config, stable_hash


def sample(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`{"model.dropout": {"type": "float", "low": 0.1, "high": 0.5}, ...}` → nested overrides."""
    overrides: dict[str, Any] = {}
    for dotted, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            value = trial.suggest_float(dotted, spec["low"], spec["high"], log=spec.get("log", False))
        elif kind == "int":
            value = trial.suggest_int(dotted, spec["low"], spec["high"], step=spec.get("step", 1))
        else:
            value = trial.suggest_categorical(dotted, spec["choices"])
        node = overrides
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    # "branches" is one categorical that sets the three branch switches together
    if "branches" in overrides.get("model", {}):
        branches = overrides["model"].pop("branches")
        overrides["model"].update({f"use_{b}_branch": b in branches.split("+") for b in ("frames", "mel", "stats")})
    return overrides


def base_params(base: ExperimentConfig, space: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The base config as a point of the search space (None if one of its values lies outside it), so a new
    study measures it first: the study's best is then never below the config it started from, measured
    the same way, and TPE starts from a known-good point."""
    values = base.model_dump()
    params: dict[str, Any] = {}
    for dotted, spec in space.items():
        if dotted == "model.branches":
            value = "+".join(b for b in ("frames", "mel", "stats") if values["model"][f"use_{b}_branch"])
        else:
            section, key = dotted.split(".")
            value = values[section][key]
        if spec["type"] == "categorical":
            if value not in spec["choices"]:
                return None
        elif not spec["low"] <= value <= spec["high"] or (spec["type"] == "int" and (value - spec["low"]) % spec.get("step", 1)):
            return None
        params[dotted] = value
    return params


def _finished(study: Any) -> int:
    """Trials that count towards the study's target: complete, pruned or failed (not waiting or running)."""
    return len([t for t in study.get_trials(deepcopy=False) if t.state.is_finished()])


def study_name(base: ExperimentConfig, spec: dict[str, Any]) -> str:
    """`tune-<config>-<fingerprint>`: the fingerprint covers what defines the objective (the base config, the
    search space, the folds), so `make tune` resumes a study only while its trials stay comparable; after a
    change to either it starts a new one instead of ranking trials measured two ways."""
    defining = {"base": fingerprint(base), "space": spec["space"], "folds": spec.get("folds")}
    return f"tune-{base.name}-{stable_hash(defining, 8)}"


#: A trial's secondary score at each rung (its running mean test log-loss), kept as a user attribute per fold count.
TIEBREAK_ATTR = "running_log_loss_{}"
#: User attribute of the enqueued base-config trial, which the pruner lets finish (the report compares against it).
BASE_ATTR = "base_config"


class FoldHalvingPruner(optuna.pruners.BasePruner):
    """Successive halving over folds with a strict quota: at a rung (a fold count in `rungs`), a trial goes on
    only if fewer than max(1, n // reduction_factor) of the n trials measured there (itself included) rank
    above it. The rank is by running mean UA, ties broken by running mean test log-loss (lower is better).

    Optuna's SuccessiveHalvingPruner promotes every trial that ties the quota's boundary value. A fold's UA
    takes few distinct values (240 test clips), so in the last study half the trials passed a "top quarter"
    rung after 1 fold (26 of 51 pruned there; 146 fold fits). The log-loss is continuous and scores the
    same predictions, so it only orders trials whose UA is equal. The base-config trial is never pruned."""

    def __init__(self, rungs: list[int], reduction_factor: int):
        self.rungs, self.reduction_factor = sorted(set(rungs)), reduction_factor

    @staticmethod
    def _key(trial: Any, step: int) -> tuple[float, float]:
        return trial.intermediate_values[step], -trial.user_attrs.get(TIEBREAK_ATTR.format(step), float("inf"))

    def prune(self, study: Any, trial: Any) -> bool:
        step = trial.last_step
        if step not in self.rungs or trial.user_attrs.get(BASE_ATTR):
            return False
        mine = self._key(trial, step)
        others = [self._key(t, step) for t in study.get_trials(deepcopy=False)
                  if t.number != trial.number and step in t.intermediate_values]
        return sum(other > mine for other in others) >= max(1, (len(others) + 1) // self.reduction_factor)


def _study(base: ExperimentConfig, spec: dict[str, Any], storage: str, worker: int = 0) -> Any:
    """The study as every worker opens it: created on first use, resumed after. Each worker's TPE gets its
    own seed (the same seed would draw the same random start-up trials in both)."""
    return optuna.create_study(
        study_name=study_name(base, spec), load_if_exists=True, direction="maximize",
        # Workers write trials concurrently: wait for sqlite's lock instead of failing on it.
        storage=optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 120}})
        if storage.startswith("sqlite") else storage,
        sampler=optuna.samplers.TPESampler(seed=base.train.seed + worker, n_startup_trials=spec.get("startup_trials", 10)),
        # The resource is folds (step = folds run). Rungs compare the same folds, so fold-to-fold spread cancels.
        pruner=FoldHalvingPruner(spec.get("rungs", [1, 2]), spec.get("reduction_factor", 4)),
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
    import mlflow
    import torch

    from emotion_core import tracking
    from emotion_core.data import EMOBOX_FOLDS

    spec = yaml.safe_load(tune_file.read_text())
    space, n_trials = spec["space"], n_trials or spec.get("n_trials", 50)
    workers = max(1, workers or spec.get("workers", 1))
    folds = spec.get("folds") or list(EMOBOX_FOLDS)
    storage = storage or f"sqlite:///{MLRUNS_DIR / 'optuna.db'}"
    study = _study(base, spec, storage)
    if render_only:
        return _report(study, base, space, folds, storage, n_trials, timeout_minutes, 0.0, 0)
    if not study.trials and (start_point := base_params(base, space)) is not None:
        study.enqueue_trial(start_point, user_attrs={BASE_ATTR: True})
    if _finished(study) < n_trials:  # trials will run: the report's wall time depends on how many side by side
        study.set_user_attr("workers", workers)
    tracking.setup("tune")
    start = time.perf_counter()
    timeout = timeout_minutes * 60 if timeout_minutes else None
    with mlflow.start_run(run_name=f"tune-{base.name}") as parent:
        mlflow.set_tags({"config": base.name, "kind": "optuna", "study": study.study_name, "workers": workers})
        if _finished(study) >= n_trials:
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
        seeds = spec.get("confirm_seeds") or []
        done = _finished(study) >= n_trials  # not after a time-boxed part
        if seeds and done and study.user_attrs.get("confirmation", {}).get("best_trial") != study.best_trial.number:
            # kept in the study, so --render and later sessions show it without re-running it
            began = time.perf_counter()
            conf = confirm(base, sample(optuna.trial.FixedTrial(study.best_params), space), folds, seeds, workers)
            study.set_user_attr("confirmation", {"best_trial": study.best_trial.number, **conf,
                                                 "seconds": time.perf_counter() - began})
        seconds = time.perf_counter() - start
        result = _report(study, base, space, folds, storage, n_trials, timeout_minutes, seconds, fold_fits)
        mlflow.log_metrics({"best_cv_ua": study.best_value, "seconds": seconds, "study_seconds": result["study_seconds"]})
        mlflow.log_dict(result, "tune.json")
        for f in result["figures"]:
            mlflow.log_artifact(str(f), "figures")
        mlflow.set_tag("parent_run", parent.info.run_id)
    return result


def _load_pools(base: ExperimentConfig, factors: list[int]) -> tuple[Any, dict[int, list]]:
    """The manifest and the cached corpus pooled to each frame rate in `factors` (one pass over the cache)."""
    from emotion_core.data import load_manifest
    from emotion_core.embeddings import EmbeddingCache
    from emotion_core.encoders import load_encoder

    manifest = load_manifest(base.data).reset_index(drop=True)
    pools: dict[int, list] = {p: [] for p in factors}
    cache = EmbeddingCache(load_encoder(base.encoder.name, runtime="torch"))
    for clip in cache.iter(manifest):
        # The log-mel is pooled here too (mel_pool is not searched): every fit then gets these very clip objects
        # back from `training.prepare`, and the stats memo is keyed by them.
        for p in factors:
            pools[p].append(clip.pooled(p, base.model.mel_pool))
    return manifest, {p: cache.attach_speed_variants(manifest, clips, base.train.speed_perturb, p) for p, clips in pools.items()}


def confirm(base: ExperimentConfig, best_overrides: dict[str, Any], folds: list[int], seeds: list[int],
            workers: int = 1) -> dict[str, Any]:
    """CV UA of the base config and of the best trial's config, each re-trained with other seeds (a new
    inner validation split and initialisation). The best of many trials is selected on its own noise
    (seed, thread count, float rounding); re-measuring both the same new way shows how much of its lead is
    real. With `workers` > 1 the (config, seed) runs go to that many processes, as the trials did."""
    import torch

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
    import torch

    from emotion_core import cv
    from emotion_core.metrics import summary

    if threads:
        torch.set_num_threads(threads)
    rate = cfg.model.frame_pool
    if rate not in _LOADED:
        manifest, pools = _load_pools(base, [rate])
        _LOADED[rate] = (manifest, pools[rate])
    manifest, clips = _LOADED[rate]
    memo = _LOADED.setdefault("stats_memo", {})  # base and best share the stats fit where seed, C and rate agree
    y = manifest["label"].to_numpy()
    return float(np.mean([summary(y[r.test_index], r.logits.argmax(-1))["ua"]
                          for r in (cv.run_fold(cfg, manifest, clips, f, stats_memo=memo) for f in folds)]))


def confirm_took(conf: dict[str, Any], template: str) -> str:
    """`template` formatted with the seed re-check's minutes, or "" for one that did not record its time."""
    return template.format(conf["seconds"] / 60) if "seconds" in conf else ""


def confirmation_means(conf: dict[str, Any]) -> dict[str, float]:
    """The seed re-check's mean CV UA over its seeds, for the best trial's config and for the base config."""
    return {name: float(np.mean(conf[name])) for name in ("best", "base")}


def _run_trials(base: ExperimentConfig, spec: dict[str, Any], folds: list[int], storage: str, parent_run_id: str,
                n_trials: int, timeout: float | None, progress: bool, worker: int = 0, threads: int | None = None) -> int:
    """One worker: trials until the study holds `n_trials` finished ones (counted across workers) or
    `timeout` seconds pass. Every trial is an MLflow run nested under `parent_run_id`. Returns the fold
    fits it ran."""
    import mlflow
    import torch

    from emotion_core import cv, tracking
    from emotion_core.metrics import summary

    if threads:
        torch.set_num_threads(threads)
    space = spec["space"]
    study = _study(base, spec, storage, worker)
    manifest, pools = _load_pools(base, _choices(space, "model.frame_pool", base.model.frame_pool))
    y = manifest["label"].to_numpy()
    tracking.setup("tune")
    fold_fits = 0
    stats_memo: dict = {}  # the stats branch's closed-form fit per (fold rows, C, layers, frame rate): once, not per trial

    def objective(trial: optuna.Trial) -> float:
        nonlocal fold_fits
        overrides = sample(trial, space)
        cfg = ExperimentConfig.model_validate(_deep_merge(base.model_dump(), overrides))
        clips = pools[cfg.model.frame_pool]
        # In-process (one worker) the parent run is active here; in a worker process it is not.
        with mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent_run_id,
                              nested=mlflow.active_run() is not None):
            mlflow.log_params(trial.params)
            mlflow.set_tag("worker", worker)
            uas, losses = [], []
            for fold in folds:
                r = cv.run_fold(cfg, manifest, clips, fold, stats_memo=stats_memo)
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

    finished = tuple(s for s in optuna.trial.TrialState if s.is_finished())  # as `_finished` counts them
    remaining = n_trials - _finished(study)
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=timeout, show_progress_bar=progress,
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=finished)])
    return fold_fits


def _report(study: Any, base: ExperimentConfig, space: dict[str, dict[str, Any]], folds: list[int], storage: str,
            n_trials: int, timeout_minutes: float | None, seconds: float, session_fold_fits: int) -> dict[str, Any]:
    """reports/<config>/tune.json, tune.md and the figures, from the stored study."""
    from emotion_core.steps import reports_dir

    out = reports_dir(base)
    figures = save_figures(study, out)
    best = {"value": study.best_value, "params": study.best_params, "trial": study.best_trial.number}
    states = [t.state.name for t in study.trials]
    start_point = base_params(base, space)
    base_trial = next((t for t in study.trials if t.params == start_point and t.value is not None), None)
    # The study's cost from its stored trials (every session, resumes included). Wall time is the union of the
    # trials' running intervals: parallel workers overlap, and the gaps between resumed sessions do not count.
    # A fold fit's mean cost (trial time per fold, in one worker) and the wall time per fold fit (what the
    # workers achieve together) then price the full study without pruning.
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials if t.duration is not None)
    study_seconds, covered = 0.0, None  # covered: the latest end so far
    for begin, end in spans:
        study_seconds += max(0.0, (end - (begin if covered is None else max(begin, covered))).total_seconds())
        covered = end if covered is None else max(covered, end)
    trial_seconds = sum(t.duration.total_seconds() for t in study.trials if t.duration is not None)
    folds_run = sum(len(t.intermediate_values) for t in study.trials if t.duration is not None)
    fold_cost = trial_seconds / folds_run if folds_run else None
    wall_per_fold = study_seconds / folds_run if folds_run else None
    result = {"study": study.study_name, "storage": storage, "n_trials": len(study.trials),
              "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
              "unfinished": states.count("FAIL") + states.count("RUNNING"),  # interrupted (by hand, a crash) or still running
              "seconds": seconds, "study_seconds": study_seconds, "trial_seconds": trial_seconds, "fold_fits": folds_run,
              "workers": study.user_attrs.get("workers", 1),
              "target_trials": n_trials, "folds": folds, "timeout_minutes": timeout_minutes,
              "fold_fits_this_session": session_fold_fits,
              "fold_fit_seconds_mean": fold_cost,
              "unpruned_study_minutes_estimate": wall_per_fold * n_trials * len(folds) / 60 if wall_per_fold else None,
              "best": best, "best_overrides": sample(optuna.trial.FixedTrial(study.best_params), space),
              "base": {"config": base.name, "trial": base_trial.number, "value": base_trial.value} if base_trial else None,
              "confirmation": study.user_attrs.get("confirmation"),
              "figures": [str(f) for f in figures]}
    (out / "tune.json").write_text(json.dumps(result, indent=2))
    (out / "tune.md").write_text(tune_markdown(result, study))
    return result


def tune_markdown(result: dict[str, Any], study: Any) -> str:
    """reports/<config>/tune.md: the time it took, the best trial and every trial's running CV UA."""
    rows = []
    for t in study.trials:
        steps = t.intermediate_values
        last = max(steps) if steps else None
        value = t.value if t.value is not None else (steps[last] if last is not None else None)
        params = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                           for k, v in t.params.items())
        rows.append(f"| {t.number} | {t.state.name.lower()} | {len(steps)} | "
                    f"{'' if value is None else f'{value:.1%}'} | {params} |")
    fit = result.get("fold_fit_seconds_mean")
    cost = (f" {result['fold_fits']} fold fits, {fit:.1f} s each in a worker on average, so {result['target_trials']} trials × "
            f"{len(result['folds'])} folds without pruning would take ≈ {result['unpruned_study_minutes_estimate']:.0f} min "
            "on this machine." if fit else "")
    base = result.get("base")
    return "\n".join([
        f"# Optuna study `{result['study']}`", "",
        f"{result['n_trials']} trials ({result['complete']} complete, {result['pruned']} pruned by successive halving"
        + (f", {result['unfinished']} unfinished" if result.get("unfinished") else "") + ") took "
        f"**{result['study_seconds'] / 60:.1f} min** wall clock with {result.get('workers', 1)} worker process(es) "
        f"({result.get('trial_seconds', result['study_seconds']) / 60:.1f} min of trial time; target {result['target_trials']} trials"
        + (f", this session time-boxed to {result['timeout_minutes']:g} min" if result.get("timeout_minutes") else "") + ")." + cost,
        f"Objective: {len(result['folds'])}-fold actor-held-out CV UA (a pruned trial's value is its running fold mean). "
        f"Storage `{result['storage']}` (resumable: `make tune` continues the study).", "",
        f"**Best: trial {result['best']['trial']}, CV UA {result['best']['value']:.1%}** — `{json.dumps(result['best']['params'])}`",
        *(["", f"Base config `{base['config']}` (trial {base['trial']}): CV UA {base['value']:.1%}. "
           "The best of many trials on the same 6 folds is optimistically biased by the selection itself, so a "
           "best trial within about a point of the base config is not evidence that it is better."] if base else []),
        *(["", f"Re-measured with `train.seed` {', '.join(map(str, conf['seeds']))} (new inner validation actors and "
           f"initialisation{confirm_took(conf, '; {:.1f} min after the study')}): best trial {conf['best_trial']} "
           f"{' / '.join(f'{v:.1%}' for v in conf['best'])} (mean {means['best']:.1%}), base config "
           f"{' / '.join(f'{v:.1%}' for v in conf['base'])} (mean {means['base']:.1%})."]
          if (conf := result.get("confirmation")) and (means := confirmation_means(conf)) else []),
        "", "| trial | state | folds run | CV UA | parameters |", "|---|---|---|---|---|", *rows, "",
        "![history](tune_history.png) ![importances](tune_importances.png)", ""])


def _choices(space: dict[str, dict[str, Any]], key: str, default: Any) -> list[Any]:
    spec = space.get(key)
    return list(spec["choices"]) if spec and spec["type"] == "categorical" else [default]


def save_figures(study: Any, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    paths = []
    for name, plot in (("tune_history.png", ovm.plot_optimization_history), ("tune_importances.png", ovm.plot_param_importances)):
        try:
            ax = plot(study)
            fig = ax.figure if hasattr(ax, "figure") else ax
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            paths.append(out / name)
        except (ValueError, RuntimeError):  # importances need ≥ 2 complete trials
            pass
    return paths


def write_tuned_config(result: dict[str, Any], base_name: str, path: Path) -> Path:
    """experiments/tuned.yaml: `base: <base>.yaml` + the best trial's overrides (the tuned model's config)."""
    import os

    from emotion_core.config import EXPERIMENTS_DIR

    body = {"base": os.path.relpath(EXPERIMENTS_DIR / f"{base_name}.yaml", path.parent), **result["best_overrides"]}
    header = f"# Written by `make tune` (study {result['study']}, best CV UA {result['best']['value']:.4f}).\n"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


__all__ = ["tune", "sample", "study_name", "confirm_took", "confirmation_means", "write_tuned_config", "load_config"]
