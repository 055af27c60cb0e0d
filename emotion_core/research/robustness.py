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
from emotion_core.head.batching import predict_logits
from emotion_core.research import cv, metrics, tracking
from emotion_core.research.ablation import slug
from emotion_core.research.cache import EmbeddingCache


def run(cfg: ExperimentConfig, conditions: list[str] | None = None, every: int = 1, progress: bool = True,
        candidates: dict[str, ExperimentConfig] | None = None) -> dict:
    """CV UA per condition beside the clean one, from the same fold heads (`every`: score every n-th test clip).
    `candidates` (name → config, e.g. the same recipe trained on degraded copies, `train.augment`) are scored
    on the same clips in the same run. The fold heads are trained first; each condition's features are then
    read, scored by every head and dropped, so memory holds one degraded corpus at a time."""
    start = time.perf_counter()
    conditions = list(conditions or CONDITIONS)
    recipes = {"as served": cfg, **(candidates or {})}
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    cache = EmbeddingCache.of(cfg)
    pool = cfg.model.frame_pool
    if any(r.model.frame_pool != pool or r.data != cfg.data or r.encoder != cfg.encoder for r in recipes.values()):
        raise ValueError("robustness candidates must share the base config's data, encoder and frame_pool")
    clean = cache.load(manifest, progress=progress, frame_pool=pool)
    scored = manifest[manifest["fold"].notna()].iloc[::every]
    ids = set(scored["clip_id"])
    y = manifest["label"].to_numpy()
    folds = [f for f in EMOBOX_FOLDS if (manifest["fold"] == f).any()]
    tracking.setup("robustness")
    with mlflow.start_run(run_name=f"robustness-{cfg.name}") as run:
        mlflow.set_tags({"config": cfg.name, "kind": "robustness", "recipes": json.dumps(list(recipes))})
        heads: dict[str, list[tuple[list[int], list]]] = {}  # recipe → per fold (scored test rows, models)
        for name, recipe in recipes.items():
            clips = cache.attach_variants(manifest, clean, recipe.train, pool, progress)
            heads[name] = []
            for fold in folds:
                result = cv.run_fold(recipe, manifest, clips, fold)
                heads[name].append(([i for i in result.test_index if manifest.at[i, "clip_id"] in ids], result.models))
            del clips
        babble = babble_pool()
        rows: dict[str, dict[str, list[dict]]] = {name: {} for name in recipes}
        for condition in ["clean", *conditions]:
            if condition == "clean":
                feats = {manifest.at[i, "clip_id"]: clean[i] for i in scored.index}
            else:
                cache.build(scored, progress=progress, condition=condition, babble=babble)
                feats = {c: f.pooled(pool) for c, f in zip(scored["clip_id"], cache.iter(scored, condition=condition))}
            for name in recipes:
                rows[name][condition] = []
                for fold, (test, models) in zip(folds, heads[name]):
                    x = [feats[manifest.at[i, "clip_id"]] for i in test]
                    logits = np.mean([predict_logits(m, x) for m in models], axis=0)
                    rows[name][condition].append({"fold": fold, **metrics.summary(y[test], logits.argmax(-1))})
            del feats
            if progress:
                print(f"{condition}: " + ", ".join(
                    f"{name} UA {np.mean([r['ua'] for r in rows[name][condition]]):.3f}" for name in recipes), flush=True)
        tables = {}
        for name in recipes:
            table = {c: {**cv.mean_std(per_fold, ("ua", "wa")), "per_fold": per_fold} for c, per_fold in rows[name].items()}
            for c, row in table.items():
                row["ua_drop"] = table["clean"]["ua_mean"] - row["ua_mean"]
                mlflow.log_metric(f"ua_{slug(name)}_{c.replace('.', '_')}", row["ua_mean"])
            tables[name] = table
        report = {"config": cfg.name, "fingerprint": fingerprint(cfg), "run_id": run.info.run_id, "every": every,
                  "clips": len(scored), "conditions": tables["as served"],
                  "candidates": {name: {"set": _overrides(cfg, recipes[name]), "conditions": tables[name]}
                                 for name in recipes if name != "as served"},
                  "seconds": round(time.perf_counter() - start, 1)}
        out = reports_dir(cfg)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.json").write_text(json.dumps(report, indent=2))
        (out / "robustness.md").write_text(markdown(report))
        for name in ("robustness.json", "robustness.md"):
            mlflow.log_artifact(str(out / name), "report")
    return report


def _overrides(base: ExperimentConfig, other: ExperimentConfig) -> dict:
    """The settings where `other` differs from `base` (what a candidate row changes)."""
    a, b = base.model_dump(), other.model_dump()
    return {f"{sec}.{k}": v for sec in b if isinstance(b[sec], dict) for k, v in b[sec].items() if a[sec].get(k) != v}


def markdown(report: dict) -> str:
    candidates = report.get("candidates", {})
    lines = [f"# Robustness of `{report['config']}` to recording conditions", "",
             f"Written by `make robustness` (`emotion_core/research/robustness.py`), MLflow run `{report['run_id']}`: the "
             f"6-fold CV heads score {report['clips']} test clips of their own held-out actors"
             + (f" (every {report['every']}th)" if report["every"] > 1 else "") + ", clean and degraded "
             "(`emotion_core/degrade.py`, seeded per clip). UA mean ± std over folds, and the change from clean:", "",
             "| condition | as served | change |" + "".join(f" {name} | change |" for name in candidates),
             "|---|---|---|" + "---|---|" * len(candidates)]
    for condition, row in report["conditions"].items():
        cells = [_cell(row, condition)] + [_cell(c["conditions"][condition], condition) for c in candidates.values()]
        lines.append(f"| {condition} | " + " | ".join(cells) + " |")
    for name, c in candidates.items():
        lines += ["", f"*{name}*: {', '.join(f'`{k}={v}`' for k, v in c['set'].items())}, trained on the same 6 folds "
                  "(its degraded training copies are of the training actors' clips; the scored clips are the test "
                  "actors')."]
    return "\n".join(lines) + "\n"


def _cell(row: dict, condition: str) -> str:
    change = "—" if condition == "clean" else f"{-row['ua_drop'] * 100:+.1f} pt"
    return f"{row['ua_mean'] * 100:.1f}% ± {row['ua_std'] * 100:.1f}% | {change}"
