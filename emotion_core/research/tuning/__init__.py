"""Optuna over the head: `space` (the typed search space), `pruner` (successive halving over folds),
`study` (trials in worker processes on a shared storage), `report` (tune.json/md, figures, the docs line)."""
