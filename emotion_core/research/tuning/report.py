"""What a study says for people and for the README: reports/<config>/tune.{json,md}, figures, the docs/tuning.md line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import optuna
from optuna.visualization import matplotlib as ovm

from emotion_core.config import ExperimentConfig, reports_dir
from emotion_core.research.tuning.space import TuneSpec, base_params, sample
from emotion_core.research.tuning.storage import SURPLUS_ATTR


def write_report(study: Any, base: ExperimentConfig, spec: TuneSpec, folds: list[int], storage: str,
            n_trials: int, timeout_minutes: float | None, seconds: float, session_fold_fits: int) -> dict[str, Any]:
    """reports/<config>/tune.json, tune.md and the figures, from the stored study."""
    space = spec.space
    out = reports_dir(base)
    figures = save_figures(study, out)
    best = {"value": study.best_value, "params": study.best_params, "trial": study.best_trial.number}
    surplus = sum(1 for t in study.trials if t.user_attrs.get(SURPLUS_ATTR))  # closed unmeasured: never counted
    states = [t.state.name for t in study.trials if not t.user_attrs.get(SURPLUS_ATTR)]
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
    result = {"study": study.study_name, "storage": storage, "n_trials": len(states), "surplus": surplus,
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
        state = "surplus (not run)" if t.user_attrs.get(SURPLUS_ATTR) else t.state.name.lower()
        rows.append(f"| {t.number} | {state} | {len(steps)} | "
                    f"{'' if value is None else f'{value:.1%}'} | {params} |")
    fit = result.get("fold_fit_seconds_mean")
    cost = (f" {result['fold_fits']} fold fits, {fit:.1f} s each in a worker on average, so {result['target_trials']} trials × "
            f"{len(result['folds'])} folds without pruning would take ≈ {result['unpruned_study_minutes_estimate']:.0f} min "
            "on this machine." if fit else "")
    base = result.get("base")
    return "\n".join([
        f"# Optuna study `{result['study']}`", "",
        f"{result['n_trials']} trials ({result['complete']} complete, {result['pruned']} pruned by successive halving"
        + (f", {result['unfinished']} unfinished" if result.get("unfinished") else "")
        + (f"; {result['surplus']} more asked for in the same instant as another worker's last one, closed unrun"
           if result.get("surplus") else "") + ") took "
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


def confirm_took(conf: dict[str, Any], template: str) -> str:
    """`template` formatted with the seed re-check's minutes, or "" for one that did not record its time."""
    return template.format(conf["seconds"] / 60) if "seconds" in conf else ""


def confirmation_means(conf: dict[str, Any]) -> dict[str, float]:
    """The seed re-check's mean CV UA over its seeds, for the best trial's config and for the base config."""
    return {name: float(np.mean(conf[name])) for name in ("best", "base")}


def save_figures(study: Any, out: Path) -> list[Path]:
    matplotlib.use("Agg")  # before pyplot: reports are written without a display
    import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

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


def readme_line(result: dict[str, Any]) -> str:
    """The generated `tuning` block of docs/tuning.md."""
    conf = result.get("confirmation")
    means = confirmation_means(conf) if conf else None
    return (f"Optuna (`make tune`): {result['n_trials']} trials ({result['complete']} complete, "
            f"{result['pruned']} pruned) in {result['study_seconds'] / 60:.0f} min on this machine with "
            f"{result['workers']} worker process(es) ({result['fold_fits']} fold fits, "
            f"{result['fold_fit_seconds_mean']:.0f} s each in a worker); best CV UA "
            f"{result['best']['value']:.1%} (trial {result['best']['trial']})"
            + (f", the base config {result['base']['value']:.1%} (trial {result['base']['trial']})" if result["base"] else "")
            + (f"; re-trained with seeds {', '.join(map(str, conf['seeds']))}"
               f"{confirm_took(conf, ' ({:.0f} min more)')}: best trial "
               f"{means['best']:.1%}, base config {means['base']:.1%} (means)" if means else "")
            + ". Every trial: [`reports/default/tune.md`](../reports/default/tune.md).")
