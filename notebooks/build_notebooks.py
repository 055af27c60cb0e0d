"""Writes the numbered notebooks from these cell sources and executes them (nbclient), so the committed
.ipynb files carry real outputs. `python notebooks/build_notebooks.py [--config default] [--no-execute]`.
The config comes from $EMOTION_NB_CONFIG inside the notebooks (the tests run them on `smoke`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

SETUP = """import os, json
from pathlib import Path
import numpy as np, pandas as pd, matplotlib.pyplot as plt
from emotion_core.config import load_config
from emotion_core.config import reports_dir
CONFIG = os.environ.get("EMOTION_NB_CONFIG", "default")
cfg = load_config(CONFIG)
print("config:", CONFIG)"""

NOTEBOOKS = {
    "01_data_exploration.ipynb": [
        ("md", "# 01 · Data exploration\nRAVDESS speech as the pipeline sees it: the manifest, class balance, durations, folds, and one clip as waveform and Whisper log-mel."),
        ("code", SETUP),
        ("code", "from emotion_core.data import load_manifest, summarize\nmanifest = load_manifest(cfg.data)\nprint(summarize(manifest))\nmanifest.head()"),
        ("code", "fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))\nmanifest['emotion'].value_counts().reindex(list(__import__('emotion_core').EMOTIONS)).plot.bar(ax=axes[0], title='clips per emotion (neutral has no strong intensity)')\nmanifest['duration_s'].plot.hist(bins=30, ax=axes[1], title='clip duration (s)')\nplt.tight_layout()"),
        ("code", "pd.crosstab(manifest['fold'], manifest['emotion']) if manifest['fold'].notna().any() else 'no folds'"),
        ("code", "from emotion_core.audio import load_audio\nfrom emotion_core.features import log_mel\nrow = manifest[manifest.emotion == 'angry'].iloc[0]\naudio = load_audio(row.path)\nmel = log_mel(audio)\nfig, axes = plt.subplots(2, 1, figsize=(10, 5))\naxes[0].plot(np.arange(len(audio)) / 16000, audio, lw=0.5); axes[0].set_title(f'{row.clip_id} ({row.emotion}, actor {row.actor})')\naxes[1].imshow(mel.numpy(), origin='lower', aspect='auto'); axes[1].set_title('Whisper log-mel (80 bins, 10 ms hop, own length)')\nplt.tight_layout()"),
        ("code", "from IPython.display import Audio\nAudio(audio, rate=16000)"),
    ],
    "02_runs_and_tuning.ipynb": [
        ("md", "# 02 · Comparing MLflow runs and the Optuna study\nEvery cross-validation is a parent run with a nested run per fold; every Optuna trial a nested run."),
        ("code", SETUP + "\nimport mlflow\nfrom emotion_core.config import tracking_uri\nmlflow.set_tracking_uri(tracking_uri())\nprint(tracking_uri())"),
        ("code", "cv_runs = mlflow.search_runs(experiment_names=['crossval'], filter_string=\"tags.kind = 'crossval'\")\ncols = [c for c in ['tags.config', 'metrics.cv_ua_mean', 'metrics.cv_ua_std', 'metrics.probe_ua_mean', 'metrics.ece_after', 'start_time'] if c in cv_runs]\ncv_runs[cols].head(10)"),
        ("code", "if len(cv_runs):\n    parent = cv_runs.iloc[0].run_id\n    folds = mlflow.search_runs(experiment_names=['crossval'], filter_string=f\"tags.mlflow.parentRunId = '{parent}'\")\n    folds = folds.sort_values('params.fold')\n    ax = folds.plot.bar(x='params.fold', y=['metrics.test_ua', 'metrics.probe_ua'], figsize=(8, 3.5), title='UA per fold: head vs linear probe')\n    ax.set_ylim(0, 1)\nelse:\n    print('no cross-validation run yet: make crossval')"),
        ("code", "import optuna\nfrom emotion_core.config import EXPERIMENTS_DIR, MLRUNS_DIR, load_config\nfrom emotion_core.research.tuning.space import load_tune_spec\nfrom emotion_core.research.tuning.study import study_name\nstorage = f\"sqlite:///{MLRUNS_DIR / 'optuna.db'}\"\n# the study of this config and search space (make tune names it by both)\nname = study_name(load_config(CONFIG), load_tune_spec(EXPERIMENTS_DIR / 'tune.yaml'))\ntry:\n    study = optuna.load_study(study_name=name, storage=storage)\n    print(len(study.trials), 'trials; best', study.best_value, study.best_params)\n    optuna.visualization.matplotlib.plot_optimization_history(study)\nexcept (KeyError, ValueError) as exc:\n    print('no Optuna study for this config yet (make tune):', exc)"),
    ],
    "03_error_analysis.ipynb": [
        ("md", "# 03 · Error analysis\nWhich emotions are confused, which actors are hard, and what the mistakes sound like (cross-validated predictions: each clip scored by a model that never heard its actor)."),
        ("code", SETUP + "\nout = reports_dir(cfg)\nreport = json.loads((out / 'cv.json').read_text())\npreds = pd.read_csv(out / 'cv_predictions.csv')\nprint(f\"CV UA {report['head']['ua_mean']:.1%} ± {report['head']['ua_std']:.1%} (probe {report['probe']['ua_mean']:.1%})\")"),
        ("code", "wrong = preds[preds.emotion != preds.predicted]\nwrong.groupby(['emotion', 'predicted']).size().sort_values(ascending=False).head(8).rename('clips').to_frame()"),
        ("code", "acc = pd.Series(report['head']['per_actor_accuracy']).sort_values()\nacc.plot.bar(figsize=(10, 3), title='accuracy per actor (held out)', ylim=(0, 1));"),
        ("code", "from IPython.display import Audio, display\nfor row in wrong.sort_values('confidence', ascending=False).head(3).itertuples():\n    print(f'{row.clip_id}: {row.emotion} heard as {row.predicted} (confidence {row.confidence:.2f}, actor {row.actor})')\n    display(Audio(row.path))"),
        ("code", "pd.DataFrame(report['head']['per_class_f1'], index=['F1']).T.plot.barh(figsize=(6, 3.5), xlim=(0, 1), legend=False, title='per-class F1');"),
    ],
}


def _strip_embedded_audio(nb: nbformat.NotebookNode) -> None:
    """Players embed the clip itself (base64); RAVDESS is never copied into the repo, so the committed
    outputs keep a note instead. Running the notebook brings the players back."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "<audio" in str(out.get("data", {}).get("text/html", "")):
                out["data"] = {"text/plain": "[audio player: run the cell to listen; not stored in the repo]"}


def build(execute: bool = True, out_dir: Path = HERE, timeout: int = 600) -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in cells]
        if execute:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE.parent)}}).execute()
            _strip_embedded_audio(nb)
        path = out_dir / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=os.environ.get("EMOTION_NB_CONFIG", "default"))
    p.add_argument("--no-execute", action="store_true")
    args = p.parse_args()
    os.environ["EMOTION_NB_CONFIG"] = args.config
    for path in build(execute=not args.no_execute):
        print("wrote", path)
