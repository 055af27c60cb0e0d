"""A team's set-up on real servers: a throwaway PostgreSQL cluster (Debian's package; `make postgres-deps`), an
MLflow tracking server on it that serves the artifacts, the champion registered and served through HTTP, and
tuning workers in separate processes with separate caches on one PostgreSQL study — one killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import optuna
import pytest
import yaml

from bench.server import Server
from emotion_core.config import cache_dir
from tools.team_servers import mlflow_server, postgres, postgres_available

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail("CI needs PostgreSQL's server binaries: `make postgres-deps` installs Debian's postgresql")
        pytest.skip("PostgreSQL's server binaries are not installed (make postgres-deps)")
    with postgres() as cluster:
        yield cluster


def _run(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_a_champion_registered_through_a_tracking_server_on_postgres_is_served(smoke_run, pg, angry_clip, tmp_path):
    """train → evaluate → register over HTTP into `mlflow server` (PostgreSQL backend, artifacts served by the server), then
    `bentoml serve` pointed at the server only loads the champion through it and answers."""
    from mlflow.tracking import MlflowClient

    with mlflow_server(pg.create_database("mlflow"), tmp_path / "mlflow") as server:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "EMOTION_REPORTS_DIR": str(tmp_path / "reports")}
        for step in ("train", "evaluate", "register"):
            _run([f"pipelines.{step}", "--config", "smoke"], env)
        champion = MlflowClient(server.url).get_model_version_by_alias("emotion-cnn", "champion")
        assert champion.source.startswith(("mlflow-artifacts:", "models:/")), champion.source
        # the artifacts are the server's: under its destination, not in the client's mlruns/
        assert list((tmp_path / "mlflow" / "artifacts").rglob("MLmodel"))

        serving = Server(tmp_path / "serve", env={**env, "EMOTION_MODEL_URI": "models:/emotion-cnn@champion"})
        try:
            serving.wait_ready()
            with httpx.Client(base_url=serving.url, timeout=120) as client:
                info = client.get("/").json()
                assert info["model_version"] == str(champion.version), info
                answer = client.post("/predict-emotion/", files={"file": ("a.flac", angry_clip.read_bytes(), "audio/flac")})
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert set(body) >= {"emotion", "confidence", "music_mood", "all_probabilities", "status"}
                assert abs(sum(body["all_probabilities"].values()) - 1) < 1e-3
        finally:
            serving.stop()


SPACE = {"model.dropout": {"type": "categorical", "choices": [0.1, 0.4]},
         "model.branches": {"type": "categorical", "choices": ["frames", "stats"]}}
GRID = [{"model.dropout": d, "model.branches": b} for d in (0.1, 0.4) for b in ("frames", "stats")]


def _point(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _worker(storage: str, space: Path, cache: Path, log: Path, index: int) -> subprocess.Popen:
    """A tuning host: its own cache dir, built by `make embed` there, then `make tune-worker`; one torch thread,
    so every process computes a trial's folds alike."""
    env = {**os.environ, "EMOTION_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    script = (f"{sys.executable} -m pipelines.embed --config smoke && "
              f"exec {sys.executable} -m pipelines.tune --config smoke --space {space} --storage {storage} "
              f"--join --worker {index}")
    with log.open("wb") as out:
        return subprocess.Popen(["bash", "-c", script], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _enqueued_study(smoke_cfg, spec_path: Path, storage: str):
    """The study the workers will join, with the whole grid queued: which trials run is then fixed, whatever
    the order the workers take them in (so the best is comparable with a serial run)."""
    from emotion_core.research.tuning.space import load_tune_spec
    from emotion_core.research.tuning.study import _study

    study = _study(smoke_cfg, load_tune_spec(spec_path), storage)
    for params in GRID:
        study.enqueue_trial(params)
    return study


def test_tuning_workers_share_a_postgres_study_and_a_killed_trial_is_retried(smoke_run, smoke_cfg, pg, tmp_path):
    from emotion_core.research.tuning.storage import WORKER_ATTR, finished_count, unsettled

    spec = tmp_path / "space.yaml"
    spec.write_text(yaml.safe_dump({"n_trials": len(GRID), "startup_trials": 0, "rungs": [], "folds": [1, 4],
                                    "heartbeat_seconds": 2, "max_retries": 2, "space": SPACE}))
    shared, serial = pg.create_database("optuna_shared"), pg.create_database("optuna_serial")
    study, serial_study = _enqueued_study(smoke_cfg, spec, shared), _enqueued_study(smoke_cfg, spec, serial)

    started = time.monotonic()
    workers = [_worker(shared, spec, tmp_path / f"cache-{i}", tmp_path / f"worker-{i}.log", i) for i in (0, 1)]
    victim, survivor = workers
    reference = None
    try:
        killed = None
        while killed is None and time.monotonic() - started < 600:  # kill worker 0 in the middle of a trial
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                if t.user_attrs.get(WORKER_ATTR, "").endswith(f":{victim.pid}"):
                    time.sleep(0.5)  # inside the objective: a fold is being fitted
                    os.killpg(victim.pid, signal.SIGKILL)
                    killed = t.number
            assert victim.poll() is None or killed is not None, (tmp_path / "worker-0.log").read_text()[-3000:]
            time.sleep(0.2)
        assert killed is not None, "worker 0 never started a trial"
        assert survivor.wait(timeout=900) == 0, (tmp_path / "worker-1.log").read_text()[-4000:]
        seconds = time.monotonic() - started
        # the reference: the same queued trials, one worker, the session's own cache
        reference = _worker(serial, spec, cache_dir(), tmp_path / "serial.log", 0)
        assert reference.wait(timeout=900) == 0, (tmp_path / "serial.log").read_text()[-4000:]
    finally:
        for proc in (*workers, *([reference] if reference else [])):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    trials = study.get_trials(deepcopy=False)
    assert not unsettled(study) and not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert trials[killed].state == optuna.trial.TrialState.FAIL  # failed by the survivor once its heartbeat was stale
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == trials[killed].params
    assert retry.user_attrs[WORKER_ATTR].endswith(f":{survivor.pid}")
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert finished_count(study) == len(complete) == len(GRID)  # every grid point measured once, none twice
    assert sorted(map(_point, (t.params for t in complete))) == sorted(map(_point, GRID))
    # the same trials run serially in one process give the same values, so the same best
    serial_values = {_point(t.params): t.value for t in serial_study.get_trials(deepcopy=False)}
    assert {_point(t.params): t.value for t in complete} == serial_values
    # (grid points that tie on the best value: optuna's best_trial is the lowest-numbered of them, and a retried
    # trial is renumbered, so the tied set is compared, not the one optuna names)
    def best_points(s: optuna.Study) -> list:
        return sorted(_point(t.params) for t in s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                      if t.value == s.best_value)

    assert study.best_value == serial_study.best_value and best_points(study) == best_points(serial_study)
    print(f"\n2 tuning workers, one killed mid-trial {killed} (retried as {retry.number}): {seconds:.0f} s with their "
          f"caches built; best CV UA {study.best_value:.3f} with {study.best_trial.params}")
