"""The search space of `make tune` (`experiments/tune.yaml`), typed, and how a trial samples it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from emotion_core.config import ExperimentConfig


class ParamSpec(BaseModel):
    """One searched setting: `float`/`int` between low and high (log scale, int step), or `categorical` choices."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["float", "int", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int = 1
    choices: list[Any] | None = None


class TuneSpec(BaseModel):
    """`experiments/tune.yaml`. Keys of `space` are config paths; "model.branches" sets use_frames_branch /
    use_mel_branch / use_stats_branch together."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_trials: int = Field(50, ge=1)
    #: Random trials before TPE.
    startup_trials: int = Field(10, ge=0)
    #: Successive halving over folds: after these fold counts...
    rungs: list[int] = [1, 2]
    #: ...only the top 1/reduction_factor of the trials measured there go on (FoldHalvingPruner).
    reduction_factor: int = Field(4, ge=2)
    #: After the study, base and best config re-trained with these seeds (selection bias check).
    confirm_seeds: list[int] = []
    #: Trial processes side by side, one CPU thread each.
    workers: int = Field(1, ge=1)
    #: Folds of the objective (None = all six EmoBox folds).
    folds: list[int] | None = None
    #: Optuna storage URL shared by every worker (None: sqlite in mlruns/; `STORAGE=` and
    #: $EMOTION_OPTUNA_STORAGE override it). research/tuning/storage.py.
    storage: str | None = None
    #: A running trial beats into the storage this often; one silent for 3 beats is failed and retried.
    heartbeat_seconds: int = Field(60, ge=1)
    #: Retries of a trial whose worker died (each a copy with the same parameters).
    max_retries: int = Field(2, ge=0)
    space: dict[str, ParamSpec]

    def defining(self) -> dict[str, Any]:
        """What the objective depends on besides the base config, as written in the YAML (the study's name)."""
        return {"space": {k: v.model_dump(exclude_unset=True) for k, v in self.space.items()}, "folds": self.folds}


def load_tune_spec(path: str | Path) -> TuneSpec:
    return TuneSpec.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def sample(trial: Any, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """`{"model.dropout": {"type": "float", "low": 0.1, "high": 0.5}, ...}` → nested overrides."""
    overrides: dict[str, Any] = {}
    for dotted, spec in space.items():
        kind = spec.type
        if kind == "float":
            value = trial.suggest_float(dotted, spec.low, spec.high, log=spec.log)
        elif kind == "int":
            value = trial.suggest_int(dotted, spec.low, spec.high, step=spec.step)
        else:
            value = trial.suggest_categorical(dotted, spec.choices)
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


def base_params(base: ExperimentConfig, space: dict[str, ParamSpec]) -> dict[str, Any] | None:
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
        if spec.type == "categorical":
            if value not in spec.choices:
                return None
        elif not spec.low <= value <= spec.high or (spec.type == "int" and (value - spec.low) % spec.step):
            return None
        params[dotted] = value
    return params


def choices(space: dict[str, ParamSpec], key: str, default: Any) -> list[Any]:
    """Every value a trial can give `key`: the categorical choices, the int range, else just `default`."""
    spec = space.get(key)
    if spec and spec.type == "categorical":
        return list(spec.choices)
    if spec and spec.type == "int":
        return list(range(int(spec.low), int(spec.high) + 1, spec.step))
    return [default]
