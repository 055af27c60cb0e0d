"""The pipeline steps as functions (embed → train → evaluate → register). `pipelines/*.py` are thin CLIs
over these; tests and notebooks call them directly."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from emotion_core.config import ExperimentConfig, reports_dir
from emotion_core.data import load_manifest, split_actors, summarize
from emotion_core.data import prepare as write_manifest
from emotion_core.degrade import babble_pool
from emotion_core.encoders import load_encoder
from emotion_core.front_end import FrontEnd
from emotion_core.head.batching import predict_logits
from emotion_core.head.calibration import fit_temperature
from emotion_core.head.model import count_trainable_parameters
from emotion_core.head.packaging import ModelMeta, load_model_dir
from emotion_core.head.speaker import clip_statistics
from emotion_core.labels import EMOTIONS
from emotion_core.research import cv, metrics, tracking
from emotion_core.research.cache import EmbeddingCache, copy_name, manifest_shard, needs_babble, training_copies
from emotion_core.research.probe import fit_speaker_probe
from emotion_core.research.reporting import cv_readme_text, model_card, update_generated_section
from emotion_core.research.training import corpus_arguments, fit

TRAIN_EXPERIMENT = "train"


def prepare(cfg: ExperimentConfig) -> dict[str, Any]:
    """Read the corpus into a manifest (path, actor, emotion, fold…), write it to the cache and log it."""
    tracking.setup("prepare")
    df, csv_path = write_manifest(cfg)
    summary = summarize(df)
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.log_params({
            "config": cfg.name, "corpus": cfg.data.corpus, "data_path": cfg.data.path, "n_clips": len(df),
            "n_actors": int(df["actor"].nunique()), "n_speakers": int(df["speaker"].nunique()),
            "actors": cfg.data.actors, "max_samples": cfg.data.max_samples,
        })
        mlflow.log_metric("total_hours", float(df["duration_s"].sum()) / 3600.0)
        mlflow.log_artifact(str(csv_path))
        mlflow.log_text(summary, "summary.txt")
    return {"manifest": str(csv_path), "clips": len(df), "run_id": run.info.run_id, "summary": summary}


def embed(cfg: ExperimentConfig, progress: bool = True, shard: str | None = None) -> dict[str, Any]:
    """Run the frozen encoder once per clip of the config's manifest and cache the outputs. `shard` "i/n": only
    that share of the clips (`cache.manifest_shard`), so n hosts writing one cache dir split the work."""
    tracking.setup("embed")
    manifest = manifest_shard(load_manifest(cfg.data), shard)
    cache = EmbeddingCache.of(cfg)  # the cache holds fp32 torch features, always
    encoder = cache.encoder
    with mlflow.start_run(run_name=f"embed-{cfg.name}"):
        mlflow.log_params({"config": cfg.name, "encoder": encoder.name, "clips": len(manifest), "shard": shard or "all"})
        start = time.perf_counter()
        counts = cache.build(manifest, progress=progress)
        babble = babble_pool() if needs_babble(cfg.train) else ()
        for copy in training_copies(cfg.train):  # one more encoder pass per training copy
            counts[f"encoded_{copy_name(**copy)}"] = cache.build(manifest, progress=progress, babble=babble, **copy)["encoded"]
        seconds = time.perf_counter() - start
        mlflow.log_metrics({"encoded": counts["encoded"], "cached": counts["cached"], "seconds": seconds})
    return {**counts, "seconds": seconds, "cache_dir": str(cache.root)}


@dataclass
class Splits:
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame


def make_splits(cfg: ExperimentConfig) -> Splits:
    manifest = load_manifest(cfg.data)
    train, val, test = split_actors(manifest, cfg.data.test_folds, cfg.data.train_split, cfg.train.seed)
    return Splits(train, val, test)


def train(cfg: ExperimentConfig, progress: bool = True) -> dict[str, Any]:
    """Train the head on the training actors (early stopping on the validation actors), log params,
    per-epoch metrics and the model to MLflow. The test actors are not touched here."""
    if cfg.train.ensemble != 1:
        raise ValueError("train.ensemble is a cross-validation measurement; the served model is one head (set it to 1)")
    tracking.setup(TRAIN_EXPERIMENT)
    splits = make_splits(cfg)
    cache = EmbeddingCache.of(cfg)
    encoder = cache.encoder
    pool = cfg.model.frame_pool  # pooled as read: the encoder-rate corpus is never held whole
    train_clips = cache.attach_variants(splits.train, cache.load(splits.train, progress=progress, frame_pool=pool),
                                        cfg.train, pool, progress)
    val_clips = cache.load(splits.val, progress=progress, frame_pool=pool) if len(splits.val) else []
    with mlflow.start_run(run_name=f"train-{cfg.name}") as run:
        mlflow.set_tags({"config": cfg.name, "encoder": encoder.name})
        mlflow.log_params(tracking.flat_params(cfg))
        mlflow.log_params({
            "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
            "train_actors": actors_of(splits.train), "val_actors": actors_of(splits.val), "test_actors": actors_of(splits.test),
        })
        result = fit(
            train_clips, splits.train["label"].to_numpy(), cfg.model, cfg.train,
            val_clips=val_clips, val_labels=splits.val["label"].to_numpy() if len(splits.val) else None,
            on_epoch=lambda epoch, row: mlflow.log_metrics(row, step=epoch), progress=progress,
            **corpus_arguments(splits.train),
        )
        n_params = count_trainable_parameters(result.model)
        # Served confidence is calibrated: temperature fit on the validation actors (never test actors).
        temperature = fit_temperature(predict_logits(result.model, val_clips), splits.val["label"].to_numpy()) if val_clips else 1.0
        mlflow.log_metrics({"trainable_params": n_params, "best_epoch": result.best_epoch, "temperature": temperature})
        cv_metrics = _cv_metrics(cfg)  # the config's cross-validated quality, if `crossval` ran
        if cv_metrics:
            mlflow.log_metrics(cv_metrics)
        meta = ModelMeta(encoder=encoder.name, encoder_fingerprint=encoder.fingerprint,
                         num_layers=encoder.num_layers, hidden_size=encoder.hidden_size, head=cfg.model.model_dump(),
                         temperature=temperature, metrics=cv_metrics, front_end=cache.front_end.to_dict())
        if result.model.frames is not None and (weights := result.model.frames.layer_weights()) is not None:
            mlflow.log_dict({f"layer_{i}": float(w) for i, w in enumerate(weights.detach())}, "layer_weights.json")
        speaker_probe = fit_speaker_probe_for(cfg, cache, splits)
        if speaker_probe is not None:
            mlflow.log_metric("speaker_probe_temperature", speaker_probe.temperature)
        model_uri = tracking.log_model(result.model, meta, speaker_probe)
    return {"run_id": run.info.run_id, "model_uri": model_uri, "best_epoch": result.best_epoch,
            "trainable_params": n_params, "history": result.history}


def fit_speaker_probe_for(cfg: ExperimentConfig, cache: EmbeddingCache, splits: Splits) -> Any:
    """The optional per-user calibration (emotion_core/head/speaker.py), fit on every training-side corpus actor
    (train + val). The extra corpora's speakers are left out: `make crosscorpus` measures a probe fit on them too
    (its "every training corpus" row) beside this one. None with fewer than 2 actors."""

    rows = pd.concat([splits.train, splits.val])
    rows = rows[rows["actor"].notna()]
    if rows["actor"].nunique() < 2 or rows["label"].nunique() < len(EMOTIONS):
        return None
    stats = np.stack([clip_statistics(c) for c in cache.iter(rows)])
    # C as measured by `make crossval`'s speaker-adapted rows (probe.fit_probe's default)
    return fit_speaker_probe(stats, rows["label"].to_numpy(), rows["actor"].to_numpy(), seed=cfg.train.seed)


def _cv_metrics(cfg: ExperimentConfig) -> dict[str, float]:
    path = reports_dir(cfg) / "cv.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    head = report["head"]
    out = {"cv_ua_mean": head["ua_mean"], "cv_ua_std": head["ua_std"], "cv_wa_mean": head["wa_mean"],
           "cv_macro_f1_mean": head["macro_f1_mean"], "cv_probe_ua_mean": report["probe"]["ua_mean"],
           "cv_ece_after": report["calibration"]["ece_after"]}
    if "random_split" in report:
        out["random_split_wa"] = report["random_split"]["wa_mean"]
    return out


def crossval(cfg: ExperimentConfig, progress: bool = True) -> dict[str, Any]:
    """6-fold actor-held-out CV of the head and the linear probe, calibration, random-split check."""
    return cv.run(cfg, progress=progress, served_runtime_check=True)


def actors_of(df: pd.DataFrame) -> str:
    """The RAVDESS actors of a split, for the run's params; extra corpora's rows have none."""
    return ",".join(str(a) for a in sorted(df["actor"].dropna().unique()))


def latest_train_run(cfg: ExperimentConfig) -> str:
    tracking.setup(TRAIN_EXPERIMENT)
    runs = mlflow.search_runs(filter_string=f"tags.config = '{cfg.name}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1, output_format="list")
    if not runs:
        raise LookupError(f"no finished train run for config {cfg.name!r}: run `python -m pipelines.train` first")
    return runs[0].info.run_id


def evaluate(cfg: ExperimentConfig, run_id: str | None = None) -> dict[str, Any]:
    """Score a trained run's model on the held-out test actors; log metrics + figures to that run and
    write `reports/<config>/evaluation.{json,md}`."""

    run_id = run_id or latest_train_run(cfg)
    tracking.setup(TRAIN_EXPERIMENT)
    splits = make_splits(cfg)
    if not len(splits.test):
        raise ValueError(f"config {cfg.name!r} has no test actors (data.test_folds={cfg.data.test_folds})")
    model_uri = mlflow.get_run(run_id).data.tags[tracking.MODEL_URI_TAG]
    model, meta = load_model_dir(Path(mlflow.artifacts.download_artifacts(model_uri)))
    cache = EmbeddingCache(load_encoder(meta.encoder, runtime="torch"), front_end=FrontEnd(**meta.front_end))
    y_true = splits.test["label"].to_numpy()
    y_pred = predict_logits(model, cache.load(splits.test)).argmax(-1)

    summary = metrics.summary(y_true, y_pred)
    report = metrics.per_class_report(y_true, y_pred)
    matrix = metrics.confusion(y_true, y_pred)
    out = reports_dir(cfg)
    test_actors = sorted(int(a) for a in splits.test["actor"].unique())
    title = f"{cfg.name}: held-out actors {', '.join(map(str, test_actors))}"
    png = metrics.plot_confusion(matrix, out / "confusion_matrix.png", title)
    result = {
        "config": cfg.name, "run_id": run_id, "model_uri": model_uri, "encoder": meta.encoder,
        "test_folds": cfg.data.test_folds, "test_actors": test_actors, "n_test": int(len(y_true)),
        **{k: round(v, 4) for k, v in summary.items()},
        "per_class": {e: {k: round(report[e][k], 4) for k in ("precision", "recall", "f1-score", "support")} for e in EMOTIONS},
        "confusion_matrix": matrix.tolist(),
    }
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    (out / "evaluation.md").write_text(evaluation_markdown(result))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({f"test_{k}": v for k, v in summary.items()})
        mlflow.log_metrics({f"test_f1_{e}": report[e]["f1-score"] for e in EMOTIONS})
        mlflow.log_artifact(str(png), "evaluation")
        mlflow.log_artifact(str(out / "evaluation.json"), "evaluation")
        mlflow.log_artifact(str(out / "evaluation.md"), "evaluation")
    return result


def evaluation_markdown(result: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {e} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1-score']:.3f} | {int(v['support'])} |"
        for e, v in result["per_class"].items()
    )
    return f"""# Evaluation — config `{result['config']}`

Held-out **actors** {', '.join(map(str, result['test_actors']))} (fold {', '.join(map(str, result['test_folds']))} of the
EmoBox RAVDESS folds; never seen in training or early stopping), {result['n_test']} clips, encoder `{result['encoder']}`.
MLflow run `{result['run_id']}`.

| metric | value |
|---|---|
| unweighted accuracy (UA, balanced) | {result['ua']:.1%} |
| weighted accuracy (WA) | {result['wa']:.1%} |
| macro-F1 | {result['macro_f1']:.3f} |

| emotion | precision | recall | F1 | clips |
|---|---|---|---|---|
{rows}

![confusion matrix](confusion_matrix.png)
"""


def update_readme(result: dict[str, Any]) -> bool:
    """Quote the evaluation report's headline numbers in the README (generated, never typed)."""
    text = (
        f"Held-out actors {', '.join(map(str, result['test_actors']))} ({result['n_test']} clips, config "
        f"`{result['config']}`, encoder `{result['encoder']}`): **UA {result['ua']:.1%}**, WA {result['wa']:.1%}, "
        f"macro-F1 {result['macro_f1']:.3f} — from [`reports/{result['config']}/evaluation.md`]"
        f"(reports/{result['config']}/evaluation.md), written by `make evaluate`."
    )
    return update_generated_section("evaluation", text)


def update_readme_cv(report: dict[str, Any]) -> bool:
    """Quote the CV report's headline numbers in the README (generated, never typed)."""
    return update_generated_section("evaluation", cv_readme_text(report))


def register(cfg: ExperimentConfig, metric: str | None = None) -> dict[str, Any]:
    """A train run of this config → `emotion-cnn@champion`, with a generated model card."""
    if cfg.data.test_folds:  # runs share held-out actors: the best one by its test score
        result = tracking.register_best(TRAIN_EXPERIMENT, cfg.name, metric=metric or "test_ua")
    else:  # trained on all actors: the latest run, tagged with the config's cross-validated quality
        result = tracking.register_best(TRAIN_EXPERIMENT, cfg.name, metric=None, extra_tags=_cv_metrics(cfg))
    card = reports_dir(cfg) / "model_card.md"
    card.write_text(model_card(cfg, result))
    tracking.describe_version(result["version"], card.read_text())
    return {**result, "model_card": str(card)}
