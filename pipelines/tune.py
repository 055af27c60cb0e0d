"""Optuna search (experiments/tune.yaml) over the head and its training; objective = 6-fold actor-held-out
CV UA on the embedding cache. Resumable (sqlite study, or PostgreSQL with --storage). Writes
reports/<config>/tune.json + figures and, with --write-config, experiments/tuned.yaml. With --join, a worker
on any host takes trials from the shared study and exits when it is done (`make tune-worker`)."""

from pathlib import Path

from emotion_core.config import EXPERIMENTS_DIR
from emotion_core.research.reporting import update_generated_section
from emotion_core.research.tuning.report import readme_line
from emotion_core.research.tuning.study import join, tune, write_tuned_config
from pipelines._cli import config_from, parser

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--space", type=Path, default=EXPERIMENTS_DIR / "tune.yaml", help="search space YAML")
    p.add_argument("--trials", type=int, default=None, help="total trials in the study (default: from the space file)")
    p.add_argument("--storage", default=None, help="Optuna storage URL, e.g. postgresql://user@host/optuna "
                   "(default: $EMOTION_OPTUNA_STORAGE, the space file's `storage`, else sqlite mlruns/optuna.db)")
    p.add_argument("--join", action="store_true", help="a worker: take trials from the shared study, then exit")
    p.add_argument("--worker", type=int, default=None, help="with --join: this worker's index (its sampler seed)")
    p.add_argument("--minutes", type=float, default=None, help="stop starting trials after this long (resume later)")
    p.add_argument("--workers", type=int, default=None, help="trial processes side by side (default: from the space file)")
    p.add_argument("--render", action="store_true", help="run no trials: rewrite the report from the stored study")
    p.add_argument("--write-config", action="store_true", help="write experiments/tuned.yaml from the best trial")
    args = p.parse_args()
    cfg = config_from(args)
    if args.join:
        fits = join(cfg, args.space, storage=args.storage, worker=args.worker, timeout_minutes=args.minutes)
        raise SystemExit(print(f"worker done: {fits} fold fits; the study is settled (nothing running or waiting)"))
    result = tune(cfg, args.space, n_trials=args.trials, storage=args.storage, timeout_minutes=args.minutes,
                  render_only=args.render, workers=args.workers)
    print(f"{result['n_trials']} trials ({result['complete']} complete, {result['pruned']} pruned) in "
          f"{result['study_seconds'] / 60:.1f} min wall clock with {result['workers']} worker(s) ({result['seconds'] / 60:.1f} min this session); "
          f"best CV UA {result['best']['value']:.1%} with {result['best']['params']}")
    if result["fold_fit_seconds_mean"]:
        print(f"one fold fit: {result['fold_fit_seconds_mean']:.1f} s in a worker on average over the study → "
              f"{result['target_trials']} trials × {len(result['folds'])} folds unpruned ≈ "
              f"{result['unpruned_study_minutes_estimate']:.0f} min on this machine")
    if cfg.name == "default":
        update_generated_section("tuning", readme_line(result))
    if args.write_config:
        print(f"wrote {write_tuned_config(result, cfg.name, EXPERIMENTS_DIR / 'tuned.yaml')}")
