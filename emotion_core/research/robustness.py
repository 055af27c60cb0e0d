"""Recording conditions RAVDESS never shows (`make robustness` → reports/<config>/robustness.{json,md}): each
fold's head of the 6-fold actor-held-out CV scores its own test actors' clips again, degraded the way the
app's users record (`emotion_core/degrade.py`: noise at 20/10/5 dB SNR — white, pink, babble made of TESS and
TurEV-DB speech — the telephone band, Opus at 12 kbit/s, room reverb, 20 dB quieter). Each degraded clip is
encoded once and cached beside the clean one (seeded by the clip: the same audio in every run)."""

from __future__ import annotations

import json
import time

import mlflow
import numpy as np

from emotion_core.config import ExperimentConfig, fingerprint, reports_dir
from emotion_core.data import EMOBOX_FOLDS, load_manifest
from emotion_core.degrade import CONDITIONS, babble_pool
from emotion_core.encoders import load_encoder
from emotion_core.head.batching import predict_logits
from emotion_core.research import cv, metrics, tracking
from emotion_core.research.cache import EmbeddingCache


def run(cfg: ExperimentConfig, conditions: list[str] | None = None, every: int = 1, progress: bool = True) -> dict:
    """CV UA per condition beside the clean one, from the same fold heads (`every`: score every n-th test clip)."""
    start = time.perf_counter()
    conditions = list(conditions or CONDITIONS)
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    cache = EmbeddingCache(load_encoder(cfg.encoder.name, runtime="torch"))
    pool = cfg.model.frame_pool
    clips = cache.attach_variants(manifest, cache.load(manifest, progress=progress, frame_pool=pool), cfg.train,
                                  pool, progress)
    scored = manifest[manifest["fold"].notna()].iloc[::every]
    babble = babble_pool()
    degraded: dict[str, dict[str, object]] = {}
    for condition in conditions:
        cache.build(scored, progress=progress, condition=condition, babble=babble)
        degraded[condition] = {c: f.pooled(pool) for c, f in zip(scored["clip_id"], cache.iter(scored, condition=condition))}
    tracking.setup("robustness")
    y = manifest["label"].to_numpy()
    rows: dict[str, list[dict]] = {"clean": [], **{c: [] for c in conditions}}
    with mlflow.start_run(run_name=f"robustness-{cfg.name}") as run:
        mlflow.set_tags({"config": cfg.name, "kind": "robustness"})
        for fold in (f for f in EMOBOX_FOLDS if (manifest["fold"] == f).any()):
            result = cv.run_fold(cfg, manifest, clips, fold)
            ids = set(scored["clip_id"])
            test = [i for i in result.test_index if manifest.at[i, "clip_id"] in ids]
            truth = y[test]
            clean = np.mean([predict_logits(m, [clips[i] for i in test]) for m in result.models], axis=0)
            rows["clean"].append({"fold": fold, **metrics.summary(truth, clean.argmax(-1))})
            for condition in conditions:
                feats = [degraded[condition][manifest.at[i, "clip_id"]] for i in test]
                logits = np.mean([predict_logits(m, feats) for m in result.models], axis=0)
                rows[condition].append({"fold": fold, **metrics.summary(truth, logits.argmax(-1))})
            if progress:
                print(f"fold {fold}: clean UA {rows['clean'][-1]['ua']:.3f}, " + ", ".join(
                    f"{c} {rows[c][-1]['ua']:.3f}" for c in conditions), flush=True)
        table = {name: {**cv.mean_std(per_fold, ("ua", "wa")), "per_fold": per_fold} for name, per_fold in rows.items()}
        for name, row in table.items():
            row["ua_drop"] = table["clean"]["ua_mean"] - row["ua_mean"]
            mlflow.log_metric(f"ua_{name.replace('.', '_')}", row["ua_mean"])
        report = {"config": cfg.name, "fingerprint": fingerprint(cfg), "run_id": run.info.run_id, "every": every,
                  "clips": len(scored), "conditions": table, "seconds": round(time.perf_counter() - start, 1)}
        out = reports_dir(cfg)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.json").write_text(json.dumps(report, indent=2))
        (out / "robustness.md").write_text(markdown(report))
        for name in ("robustness.json", "robustness.md"):
            mlflow.log_artifact(str(out / name), "report")
    return report


def markdown(report: dict) -> str:
    lines = [f"# Robustness of `{report['config']}` to recording conditions", "",
             f"Written by `make robustness` (`emotion_core/research/robustness.py`), MLflow run `{report['run_id']}`: the "
             f"6-fold CV heads score {report['clips']} test clips of their own held-out actors"
             + (f" (every {report['every']}th)" if report["every"] > 1 else "") + ", clean and degraded "
             "(`emotion_core/degrade.py`, seeded per clip).", "",
             "| condition | UA (mean ± std over folds) | change from clean |", "|---|---|---|"]
    for name, row in report["conditions"].items():
        change = "—" if name == "clean" else f"{-row['ua_drop'] * 100:+.1f} pt"
        lines.append(f"| {name} | {row['ua_mean'] * 100:.1f}% ± {row['ua_std'] * 100:.1f}% | {change} |")
    return "\n".join(lines) + "\n"
