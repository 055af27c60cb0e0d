"""Where a study lives and how its workers stay honest about it: sqlite on one machine (`mlruns/optuna.db`), any
SQLAlchemy URL — PostgreSQL for a team — when workers on several hosts share one study.

Every worker's trials beat a heartbeat into the storage. A worker that dies mid-trial (killed, host lost)
stops beating; once its trial is `grace` seconds stale, the next worker to look marks it FAIL and
`RetryHeartbeatStaleTrialCallback` queues a copy with the same parameters, so no trial stays RUNNING forever and the
killed one is measured after all. Connections are checked before use (`pool_pre_ping`: a restarted database
or a dropped idle connection costs a reconnect, not a crashed worker) and bounded per worker.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import optuna

from emotion_core.config import MLRUNS_DIR

#: A team's storage for every `make tune` / `make tune-worker` on this host (else the spec's, else sqlite).
STORAGE_ENV = "EMOTION_OPTUNA_STORAGE"
#: Connections one worker process may hold: the trial loop's and the heartbeat thread's.
POOL_SIZE, MAX_OVERFLOW = 2, 2
#: A stale trial is failed once its last heartbeat is this many intervals old (a busy host may beat late).
GRACE_INTERVALS = 3


def default_storage(configured: str | None = None) -> str:
    """$EMOTION_OPTUNA_STORAGE, else the tune spec's `storage`, else sqlite in mlruns/."""
    return os.environ.get(STORAGE_ENV) or configured or f"sqlite:///{MLRUNS_DIR / 'optuna.db'}"


def open_storage(url: str, heartbeat_seconds: int = 60, max_retries: int = 2) -> optuna.storages.RDBStorage:
    """The RDB storage every worker opens: heartbeats, retries of dead workers' trials, checked and bounded
    connections (sqlite: wait for the file lock instead of failing on it)."""
    if url.startswith("sqlite"):
        engine: dict[str, Any] = {"connect_args": {"timeout": 120}}
    else:
        engine = {"pool_pre_ping": True, "pool_size": POOL_SIZE, "max_overflow": MAX_OVERFLOW, "pool_recycle": 1800}
    with warnings.catch_warnings():  # heartbeats and the retry callback are marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat_seconds,
            grace_period=GRACE_INTERVALS * heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries))


def redacted(url: str) -> str:
    """`url` without a password, for reports and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}@{host}"


def retried(trials: list[Any]) -> set[int]:
    """Numbers of the failed trials a retry re-queued (each retry carries its predecessors' numbers)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", [])}


#: User attribute of a trial that was asked for when the target was already covered (two workers asking in the
#: same instant for the last slot): closed at once, unmeasured, and never counted.
SURPLUS_ATTR = "surplus"


class SurplusTrial(Exception):
    """Raised by a trial that starts after the study's target was covered (see `is_surplus`)."""


def _counted(trials: list[Any]) -> int:
    again = retried(trials)
    return sum(1 for t in trials if t.state.is_finished() and not t.user_attrs.get(SURPLUS_ATTR)
               and not (t.state == optuna.trial.TrialState.FAIL and t.number in again))


def finished_count(study: Any) -> int:
    """Trials that count towards the study's target: complete, pruned, or failed for good — a failed trial
    whose retry is queued or ran is not counted twice, a surplus one never, and waiting or running trials
    are not counted yet."""
    return _counted(study.get_trials(deepcopy=False))


def is_surplus(study: Any, number: int, n_trials: int) -> bool:
    """Whether trial `number`, just asked for, is beyond the target: the finished trials, the waiting ones and
    the trials running with a lower number already fill it. Workers check the count before asking, but two
    can ask in the same instant; the lower number keeps the slot. A queued trial (enqueued, or the retry of
    a dead worker's) is never surplus: it is part of the target."""
    trials = study.get_trials(deepcopy=False)
    mine = next(t for t in trials if t.number == number)
    if "fixed_params" in mine.system_attrs or "failed_trial" in mine.system_attrs:
        return False
    ahead = sum(1 for t in trials if t.state == optuna.trial.TrialState.WAITING
                or (t.state == optuna.trial.TrialState.RUNNING and t.number < number))
    return _counted(trials) + ahead >= n_trials


#: User attribute a trial gets as it starts: the host and process running it (and a sign it beats a heartbeat).
WORKER_ATTR = "worker"


def unsettled(study: Any) -> list[Any]:
    """Trials still to come: WAITING ones, and RUNNING ones a heartbeating worker started (a RUNNING trial left by
    an older version, without heartbeats, can never be told from a live one and is not waited for). The study
    is settled when none are left."""
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,
                                                                 optuna.trial.TrialState.WAITING))
            if t.state == optuna.trial.TrialState.WAITING or WORKER_ATTR in t.user_attrs]
