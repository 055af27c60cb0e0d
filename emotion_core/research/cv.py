"""Actor-held-out cross-validation on the cached features: the CNN head and the linear-probe baseline
on the same folds, in the same run. Each fold's inner validation (early stopping, temperature) comes
from its training actors only; the test actors are scored once, at the end."""

from __future__ import annotations

import contextlib
import json
import resource
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import mlflow
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emotion_core.config import ExperimentConfig, fingerprint, reports_dir
from emotion_core.data import EMOBOX_FOLDS, load_manifest, split_actors
from emotion_core.encoders import load_encoder
from emotion_core.front_end import FrontEnd
from emotion_core.head import calibration
from emotion_core.head.batching import predict_logits
from emotion_core.head.calibration import fit_temperature
from emotion_core.head.clip_features import ClipFeatures
from emotion_core.head.speaker import SpeakerProfile, clip_statistics, standardise_per_speaker
from emotion_core.labels import EMOTIONS
from emotion_core.research import metrics, probe, tracking
from emotion_core.research.cache import EmbeddingCache, encoder_cache_dir
from emotion_core.research.reporting import cv_markdown
from emotion_core.research.top_layer_fit import AdaptResult, adapted_in_place, fit_top_layers, source_state
from emotion_core.research.training import corpus_arguments, fit


@dataclass
class FoldResult:
    fold: int
    test_index: np.ndarray  # row positions in the manifest
    logits: np.ndarray  # [n_test, 8], uncalibrated
    temperature: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    probe_logits: np.ndarray | None = None
    #: The same models on the test clips' features from the served encoder runtime (ONNX int8), if given.
    served_logits: np.ndarray | None = None
    #: The fold's heads (one per ensemble member), to score the test clips again (other recording conditions).
    models: list = field(default_factory=list)
    #: With `adapt.layers`: the fold's adapted top layers, their best epoch and fit seconds.
    adaptation: AdaptResult | None = None


def run_fold(cfg: ExperimentConfig, manifest: pd.DataFrame, clips: Sequence[ClipFeatures], fold: int,
             probe_features: np.ndarray | None = None, progress: bool = False,
             on_epoch: Callable[[int, dict[str, float]], None] | None = None,
             served_clips: Sequence[ClipFeatures] | None = None, stats_memo: dict | None = None,
             sources: Sequence | None = None) -> FoldResult:
    """One fold: the head (and, with `probe_features`, the probe) trained on the fold's training actors, its
    inner validation actors for early stopping and temperature, scored on its test actors. With
    `adapt.layers`, `sources` (each clip's `top_layer_fit.source_state`) first train the encoder's top layers
    on the same split, and every clip's top states are recomputed by them before the head trains."""
    # Row positions by clip id (split_actors returns re-sorted, re-indexed frames).
    pos = pd.Series(np.arange(len(manifest)), index=manifest["clip_id"].to_numpy())
    actors, y = manifest["actor"].to_numpy(), manifest["label"].to_numpy()
    adaptation, adapted = None, contextlib.nullcontext()
    if cfg.adapt.layers:
        if sources is None:
            raise ValueError("adapt.layers needs each clip's encoder-rate source state (cv.run passes them)")
        if served_clips is not None:
            raise ValueError("adapt.layers: the served runtime has no adapted encoder yet")
        train, val, _ = split_actors(manifest, [fold], cfg.data.train_split, cfg.train.seed)
        tr, va = (pos[df["clip_id"].to_numpy()].to_numpy() for df in (train, val))
        adaptation = fit_top_layers(cfg.encoder.name, [sources[i] for i in tr], [clips[i] for i in tr], y[tr], cfg.adapt,
                                    cfg.train, [sources[i] for i in va], [clips[i] for i in va],
                                    y[va] if len(va) else None, corpus_arguments(manifest.iloc[tr])["label_masks"])
        adapted = adapted_in_place(adaptation.top, clips, sources)
        stats_memo = None  # the memo is keyed by clip objects, whose top states change inside the block
    with adapted:
        members = []  # train.ensemble > 1: heads with their own validation actors and seed, logits averaged
        for member in range(cfg.train.ensemble):
            train_cfg = cfg.train.model_copy(update={"seed": cfg.train.seed + member})
            train, val, test = split_actors(manifest, [fold], cfg.data.train_split, train_cfg.seed)
            tr, va, te = (pos[df["clip_id"].to_numpy()].to_numpy() for df in (train, val, test))
            assert not set(actors[te]) & set(actors[np.concatenate([tr, va])]), "test actors leaked into training"
            result = fit([clips[i] for i in tr], y[tr], cfg.model, train_cfg,
                         val_clips=[clips[i] for i in va], val_labels=y[va] if len(va) else None,
                         on_epoch=on_epoch if member == 0 else None, progress=progress, stats_memo=stats_memo,
                         **corpus_arguments(manifest.iloc[tr]))
            temperature = fit_temperature(predict_logits(result.model, [clips[i] for i in va]), y[va]) if len(va) else 1.0
            served = predict_logits(result.model, [served_clips[i] for i in te]) if served_clips is not None else None
            members.append({"logits": predict_logits(result.model, [clips[i] for i in te]), "temperature": temperature,
                            "served": served, "result": result, "tr": tr, "va": va})
    logits = np.mean([m["logits"] for m in members], axis=0)
    temperature = float(np.exp(np.mean([np.log(m["temperature"]) for m in members])))  # geometric mean of the members'
    served_logits = np.mean([m["served"] for m in members], axis=0) if served_clips is not None else None
    result, tr, va = members[0]["result"], members[0]["tr"], members[0]["va"]  # history and probe: the first member's
    probe_logits = None
    if probe_features is not None:  # the probe fits on all training actors (train + val)
        fit_idx = np.concatenate([tr, va])
        clf = probe.fit_probe(probe_features[fit_idx], y[fit_idx])
        probe_logits = clf.decision_function(probe_features[te])
    return FoldResult(fold, te, logits, temperature, result.best_epoch, result.history, probe_logits, served_logits,
                      [m["result"].model for m in members], adaptation)


def mean_std(rows: list[dict], keys: Sequence[str]) -> dict[str, float]:
    """`<key>_mean` and `<key>_std` (population std) of each key over rows (folds, seeds)."""
    table = pd.DataFrame(rows)
    return {**{f"{k}_mean": float(table[k].mean()) for k in keys}, **{f"{k}_std": float(table[k].std(ddof=0)) for k in keys}}


def summarise(manifest: pd.DataFrame, folds: list[FoldResult], attr: str = "logits") -> dict:
    """Per-fold UA/WA/macro-F1, mean ± std, summed confusion, per-class F1, per-actor accuracy."""
    y = manifest["label"].to_numpy()
    per_fold = []
    y_all, p_all, idx_all = [], [], []
    for f in folds:
        pred = getattr(f, attr).argmax(-1)
        per_fold.append({"fold": f.fold, **metrics.summary(y[f.test_index], pred)})
        y_all.append(y[f.test_index]), p_all.append(pred), idx_all.append(f.test_index)
    y_all, p_all, idx_all = np.concatenate(y_all), np.concatenate(p_all), np.concatenate(idx_all)
    actors = manifest["actor"].to_numpy()[idx_all]
    per_actor = {int(a): float((p_all[actors == a] == y_all[actors == a]).mean()) for a in sorted(set(actors))}
    report = metrics.per_class_report(y_all, p_all)
    return {
        "per_fold": per_fold,
        **mean_std(per_fold, ("ua", "wa", "macro_f1")),
        "confusion": metrics.confusion(y_all, p_all).tolist(),
        "per_class_f1": {k: float(v["f1-score"]) for k, v in report.items() if k in EMOTIONS},
        "per_actor_accuracy": per_actor,
    }


def random_split(cfg: ExperimentConfig, manifest: pd.DataFrame, clips: Sequence[ClipFeatures],
                 test_size: float = 0.2, seeds: int = 5, stats_memo: dict | None = None) -> dict:
    """The seed's comparison: stratified random 80/20 clip splits. Speaker-DEPENDENT (the same actors
    are in train and test), so it measures actor recognition as much as emotion. One split of 288 test
    clips swings by ±1.5 pt with its seed, so `seeds` splits (and heads) are drawn; wa/ua are their means.
    Each head trains on its whole 80 % for the config's fixed schedule and keeps the last epoch (the
    recipe's mode without validation data), as the seed's 80/20 split does. Holding a tenth of it back
    for early stopping instead cost ~0.75 pt (measured on RAVDESS, default config, the same 5 seeds)."""

    y = manifest["label"].to_numpy()
    extra = manifest["fold"].isna().to_numpy()  # data.extra_train rows (TESS) only ever train
    idx = np.flatnonzero(~extra)
    per_seed = []
    for seed in range(cfg.train.seed, cfg.train.seed + seeds):
        tr, te = train_test_split(idx, test_size=test_size, stratify=y[idx], random_state=seed)
        tr = np.concatenate([tr, np.flatnonzero(extra)]) if extra.any() else tr
        result = fit([clips[i] for i in tr], y[tr], cfg.model, cfg.train.model_copy(update={"seed": seed}), progress=False,
                     stats_memo=stats_memo, **corpus_arguments(manifest.iloc[tr]))
        pred = predict_logits(result.model, [clips[i] for i in te]).argmax(-1)
        per_seed.append({"seed": seed, "n_test": len(te), **metrics.summary(y[te], pred)})
    return {**mean_std(per_seed, ("wa", "ua")), "per_seed": per_seed, "epochs": cfg.train.epochs}


def speaker_adapted_probe(manifest: pd.DataFrame, feats: np.ndarray, enrollment: int | None,
                          seed: int = 0) -> dict:
    """Probe UA with per-speaker standardisation of pooled features (`feats`: `probe.pooled` rows). Training actors are normalised with
    all their clips; each test actor with the mean/std of `enrollment` of its OTHER clips (never labels,
    never the clip being scored; None = all its other clips). A per-user calibration, reported apart from
    the speaker-independent headline."""

    y, actors = manifest["label"].to_numpy(), manifest["actor"].to_numpy()
    rng = np.random.default_rng(seed)
    normed = standardise_per_speaker(feats, actors)
    uas = []
    for test_actors in EMOBOX_FOLDS.values():
        test = np.isin(actors, test_actors)
        if not test.any():  # a shrunk manifest lacks some folds
            continue
        clf = probe.fit_probe(normed[~test], y[~test])
        pred, truth = [], []
        for a in test_actors:
            rows = np.flatnonzero(actors == a)
            if len(rows) < 3:
                continue
            for i in rows:
                others = rows[rows != i]
                pool = others if enrollment is None else rng.choice(others, size=min(enrollment, len(others)), replace=False)
                x = SpeakerProfile.from_statistics(feats[pool]).standardise(feats[i])
                pred.append(int(clf.predict(x[None])[0])), truth.append(y[i])
        uas.append(metrics.summary(np.array(truth), np.array(pred))["ua"])
    return {"enrollment": enrollment, "ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas))}


def served_runtime_clips(cfg: ExperimentConfig, manifest: pd.DataFrame,
                         progress: bool = False) -> tuple[str, list[ClipFeatures]] | None:
    """The corpus as the served encoder runtime (ONNX int8) computes it, pooled like the head's training
    features, with that runtime's name: a cache of its own beside the fp32 one (built once, ~35 s for
    RAVDESS). None when the config's encoder has no optimised runtime or ONNX Runtime is unavailable."""

    encoder = load_encoder(cfg.encoder.name)  # the serving default ($EMOTION_RUNTIME)
    if getattr(encoder, "runtime", "torch") == "torch":
        return None
    front_end = FrontEnd.of(cfg.encoder)
    fp32_root = encoder_cache_dir(encoder, front_end)
    cache = EmbeddingCache(encoder, root=fp32_root.with_name(f"{fp32_root.name}-{encoder.runtime}"), front_end=front_end)
    cache.build(manifest, progress=progress)
    return encoder.runtime, cache.load(manifest, frame_pool=cfg.model.frame_pool)


def run(cfg: ExperimentConfig, *, random_split_check: bool = True, adapted: Sequence[int | None] = (10, 20, None),
        progress: bool = True, served_runtime_check: bool = False) -> dict:
    """The full CV of a config: MLflow parent run + one nested run per fold; CNN head and probe on the
    same folds; calibration; the speaker-dependent random split; speaker-adapted probe rows; with
    `served_runtime_check`, the same fold models scored on the served runtime's (int8) features too.
    Returns the report dict (also written to reports/<config>/cv.json + cv.md + figures)."""

    start = time.perf_counter()
    tracking.setup("crossval")
    manifest = load_manifest(cfg.data).reset_index(drop=True)
    # One pass over the cache: the probe baseline reads the encoder's own frame rate, the head the pooled
    # frames (pooled once here, not per fold; the encoder-rate corpus is never held whole).
    probe_rows, clips, sources = [], [], []
    cache = EmbeddingCache.of(cfg)
    for clip in cache.iter(manifest, progress=progress):
        probe_rows.append(clip_statistics(clip))
        if cfg.adapt.layers:  # what the adapted top layers read, at the encoder's rate
            sources.append(source_state(clip, cfg.adapt))
        clips.append(clip.pooled(cfg.model.frame_pool, cfg.model.mel_pool))  # the head's view, as `training.prepare` makes it
    probe_features = np.stack(probe_rows)
    clips = cache.attach_variants(manifest, clips, cfg.train, cfg.model.frame_pool, progress)
    served: list | None = None
    served_runtime = None
    if served_runtime_check:  # test actors' features as the served (int8) encoder gives them
        rows = np.flatnonzero(manifest["fold"].notna().to_numpy())
        found = served_runtime_clips(cfg, manifest.iloc[rows], progress)
        if found is not None:
            served_runtime, feats = found
            served = [None] * len(manifest)
            for i, f in zip(rows, feats):
                served[i] = f
    folds = [f for f in EMOBOX_FOLDS if (manifest["fold"] == f).any()]
    y = manifest["label"].to_numpy()
    out = reports_dir(cfg)
    results: list[FoldResult] = []
    stats_memo: dict = {}  # each clip's stats-branch features: computed once for every fold and split
    with mlflow.start_run(run_name=f"cv-{cfg.name}") as parent:
        mlflow.set_tags({"config": cfg.name, "kind": "crossval"})
        mlflow.log_params(tracking.flat_params(cfg))
        for fold in folds:
            with mlflow.start_run(run_name=f"fold-{fold}", nested=True):
                r = run_fold(cfg, manifest, clips, fold, probe_features=probe_features, progress=False,
                             on_epoch=lambda e, row: mlflow.log_metrics(row, step=e), served_clips=served,
                             stats_memo=stats_memo, sources=sources or None)
                fold_cnn = metrics.summary(y[r.test_index], r.logits.argmax(-1))
                fold_probe = metrics.summary(y[r.test_index], r.probe_logits.argmax(-1))
                mlflow.log_params({"fold": fold, "test_actors": ",".join(map(str, EMOBOX_FOLDS[fold]))})
                mlflow.log_metrics({**{f"test_{k}": v for k, v in fold_cnn.items()},
                                    **{f"probe_{k}": v for k, v in fold_probe.items()},
                                    "temperature": r.temperature, "best_epoch": r.best_epoch})
            results.append(r)
            if progress:
                print(f"fold {fold}: head UA {fold_cnn['ua']:.3f} | probe UA {fold_probe['ua']:.3f} | T={r.temperature:.2f}", flush=True)

        head, baseline = summarise(manifest, results), summarise(manifest, results, "probe_logits")
        served_head = summarise(manifest, results, "served_logits") if served is not None else None
        idx = np.concatenate([r.test_index for r in results])
        raw = np.concatenate([calibration.softmax(r.logits) for r in results])
        cal = np.concatenate([calibration.softmax(r.logits, r.temperature) for r in results])
        calib = {
            "ece_before": calibration.ece(raw, y[idx]), "ece_after": calibration.ece(cal, y[idx]),
            "temperatures": [r.temperature for r in results],
            "before": calibration.threshold_stats(raw, y[idx]), "after": calibration.threshold_stats(cal, y[idx]),
        }
        figures = {
            "confusion_counts": metrics.plot_confusion(np.array(head["confusion"]), out / "cv_confusion_counts.png",
                                                       f"{cfg.name}: 6-fold CV (counts)", normalise=False),
            "confusion": metrics.plot_confusion(np.array(head["confusion"]), out / "cv_confusion.png",
                                                f"{cfg.name}: 6-fold CV (row-normalised)"),
            "reliability": calibration.plot_reliability({"uncalibrated": raw, "temperature-scaled": cal}, y[idx],
                                                        out / "reliability.png"),
        }
        report = {"config": cfg.name, "fingerprint": fingerprint(cfg), "run_id": parent.info.run_id, "encoder": cfg.encoder.name,
                  "n_clips": int(manifest["fold"].notna().sum()), "extra_train": list(cfg.data.extra_train),
                  "n_extra_train_clips": int(manifest["fold"].isna().sum()), "folds": folds, "head": head, "probe": baseline, "calibration": calib}
        if cfg.adapt.layers:
            report["adaptation"] = {
                **cfg.adapt.model_dump(), "trainable_parameters": results[0].adaptation.top.trainable_parameters(),
                "per_fold": [{"fold": r.fold, "best_epoch": r.adaptation.best_epoch, "seconds": r.adaptation.seconds}
                             for r in results],
                # this process' high-water mark: the cached corpus, the encoder-rate sources and the fits together
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if served_head is not None:
            report["head_served_runtime"] = {"runtime": served_runtime, **served_head}
            mlflow.log_metric("served_runtime_ua_mean", served_head["ua_mean"])
        if random_split_check:
            report["random_split"] = random_split(cfg, manifest, clips, stats_memo=stats_memo)
        corpus_rows = manifest["fold"].notna().to_numpy()  # without data.extra_train rows (no actor)
        report["speaker_adapted_probe"] = [speaker_adapted_probe(manifest[corpus_rows], probe_features[corpus_rows], k)
                                           for k in adapted]
        report["seconds"] = time.perf_counter() - start
        mlflow.log_metrics({"cv_ua_mean": head["ua_mean"], "cv_ua_std": head["ua_std"], "cv_wa_mean": head["wa_mean"],
                            "cv_macro_f1_mean": head["macro_f1_mean"], "probe_ua_mean": baseline["ua_mean"],
                            "ece_before": calib["ece_before"], "ece_after": calib["ece_after"]})
        if "random_split" in report:
            mlflow.log_metric("random_split_wa", report["random_split"]["wa_mean"])
        per_clip = manifest.loc[idx, ["path", "clip_id", "actor", "emotion"]].assign(
            fold=np.concatenate([[r.fold] * len(r.test_index) for r in results]),
            predicted=[EMOTIONS[i] for i in cal.argmax(-1)], confidence=cal.max(-1).round(4))
        per_clip.to_csv(out / "cv_predictions.csv", index=False)
        (out / "cv.json").write_text(json.dumps(report, indent=2))
        (out / "cv.md").write_text(cv_markdown(report))
        for path in [*figures.values(), out / "cv.json", out / "cv.md", out / "cv_predictions.csv"]:
            mlflow.log_artifact(str(path), "report")
    return report
