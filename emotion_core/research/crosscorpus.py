"""Voices the model has never heard (`make crosscorpus` → reports/<base>/crosscorpus.{json,md}).

For the base recipe (the served one, the baseline row) and each candidate of `experiments/crosscorpus.yaml`,
in one run, on the same cached features:

* leave-one-corpus-out: for each held-out corpus, a head trained on the recipe's other corpora scores it
  (UA over the classes that corpus has, from the 8-way answer as served; per-class recall; the share of
  `neutral` answers), once per seed;
* the RAVDESS 6-fold actor-held-out CV, the recipe's other corpora added to every fold's training side only.

Early stopping and temperature come from training-side RAVDESS actors only (none when RAVDESS is held out:
all epochs, last kept). The candidates are judged on both axes (`ADOPT_LOCO_GAIN`, `MAX_CV_LOSS`).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict

from emotion_core.audio import load_audio
from emotion_core.config import ExperimentConfig, fingerprint, load_config, reports_dir
from emotion_core.data import EMOBOX_FOLDS, cap_samples, load_manifest, split_actors
from emotion_core.data.corpora import CORPORA, class_mask
from emotion_core.front_end import FrontEnd
from emotion_core.head.batching import predict_logits
from emotion_core.head.speaker import ADAPT_MIN_CLIPS, RunningProfile, SpeakerProbe, SpeakerProfile, clip_statistics
from emotion_core.labels import EMOTION_TO_INDEX, EMOTIONS
from emotion_core.research import cv, metrics, probe, tracking
from emotion_core.research.ablation import AblationRow, slug
from emotion_core.research.cache import EmbeddingCache, training_copies
from emotion_core.research.reporting import crosscorpus_markdown
from emotion_core.research.top_layer_fit import AdaptResult, adapted_in_place, fit_top_layers, source_state
from emotion_core.research.training import corpus_arguments, fit
from emotion_core.vad import speech_segments

#: A candidate replaces the served recipe when its mean leave-one-corpus-out UA (over the corpora the
#: baseline can be scored on) rises by at least this much and by more than the seed spread of that mean, and
#: its RAVDESS CV UA falls by no more than MAX_CV_LOSS, all in the same run.
ADOPT_LOCO_GAIN = 0.03
MAX_CV_LOSS = 0.01


class Candidate(AblationRow):
    """A recipe to measure beside the base: a name, its overrides and, for a costly one, fewer CV seeds."""
    #: Seeds of its RAVDESS CV when fewer than the spec's (an adapted encoder costs ~30 min per seed); the rule
    #: then compares it with the baseline's CV on the same seeds. None = the spec's `cv_seeds`; [] = its held-out
    #: corpora first, the CV not yet (undecided; a later run with seeds reuses the held-out rows).
    cv_seeds: list[int] | None = None


class CrossCorpusSpec(BaseModel):
    """`experiments/crosscorpus.yaml`."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str = "default"
    held_out: list[str] = ["tess", "turev", "ravdess"]
    seeds: list[int] = [0, 1]
    #: The RAVDESS CV of each recipe, once per seed (`train.seed`); the rule compares the means. One seed's
    #: CV moves by tenths of a point between seeds while the rule's margin is one point.
    cv_seeds: list[int] = [0]
    candidates: list[Candidate] = []
    #: Shrunk runs (the tests): at most this many clips of each corpus other than the base's own,
    #: stratified by emotion. None = all.
    max_clips: int | None = None


def load_spec(path: str | Path) -> CrossCorpusSpec:
    spec = CrossCorpusSpec.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    if unknown := sorted(set(spec.held_out) - set(CORPORA)):
        raise ValueError(f"held_out {unknown}: known corpora are {sorted(CORPORA)}")
    return spec


def training_corpora(cfg: ExperimentConfig) -> list[str]:
    return [cfg.data.corpus if cfg.data.corpus in CORPORA else "ravdess", *cfg.data.extra_train]


def score(manifest: pd.DataFrame, logits: np.ndarray) -> dict:
    """UA over the corpus' own classes (8-way argmax: an answer outside them is simply wrong), per-class
    recall, and how often each answer was `neutral`."""
    y, pred = manifest["label"].to_numpy(), logits.argmax(-1)
    present = [e for e in EMOTIONS if (y == EMOTION_TO_INDEX[e]).any()]
    recall = {e: float((pred[y == EMOTION_TO_INDEX[e]] == EMOTION_TO_INDEX[e]).mean()) for e in present}
    return {"ua": float(np.mean(list(recall.values()))), "recall": recall,
            "neutral_rate": float((pred == EMOTION_TO_INDEX["neutral"]).mean()),
            "confusion": metrics.confusion(y, pred).tolist()}


def _fit_and_score(cfg: ExperimentConfig, train: pd.DataFrame, clips: dict[str, object], seed: int,
                   tests: dict[str, pd.DataFrame], memo: dict,
                   sources: dict[str, object] | None = None) -> tuple[dict[str, dict], AdaptResult | None]:
    """One head on `train` (its RAVDESS actors split for validation), scored on each of `tests`. With
    `adapt.layers`, the top encoder layers are first adapted on the same split from `sources` (each clip's
    `top_layer_fit.source_state`), and the head trains and scores on the states they give."""
    train_cfg = cfg.train.model_copy(update={"seed": seed})
    fit_part, val, _ = split_actors(train, [], cfg.data.train_split, seed) if train["fold"].notna().any() else (
        train, train.iloc[:0], None)
    adaptation, adapted = None, contextlib.nullcontext()
    if cfg.adapt.layers:
        if sources is None:
            raise ValueError("adapt.layers needs each clip's encoder-rate source state (crosscorpus.run passes them)")
        fit_ids, val_ids = fit_part["clip_id"].tolist(), val["clip_id"].tolist()
        adaptation = fit_top_layers(cfg.encoder.name, [sources[c] for c in fit_ids], [clips[c] for c in fit_ids],
                                    fit_part["label"].to_numpy(), cfg.adapt, train_cfg, [sources[c] for c in val_ids],
                                    [clips[c] for c in val_ids], val["label"].to_numpy() if len(val) else None,
                                    corpus_arguments(fit_part)["label_masks"])
        used = list(dict.fromkeys([*fit_ids, *val_ids, *(c for df in tests.values() for c in df["clip_id"])]))
        adapted = adapted_in_place(adaptation.top, [clips[c] for c in used], [sources[c] for c in used])
        memo = None  # keyed by clip objects, whose top states change inside the block
    with adapted:
        result = fit([clips[c] for c in fit_part["clip_id"]], fit_part["label"].to_numpy(), cfg.model, train_cfg,
                     val_clips=[clips[c] for c in val["clip_id"]], val_labels=val["label"].to_numpy() if len(val) else None,
                     progress=False, stats_memo=memo, **corpus_arguments(fit_part))
        scores = {name: score(df, predict_logits(result.model, [clips[c] for c in df["clip_id"]])) for name, df in tests.items()}
    return scores, adaptation


def with_copies(cfg: ExperimentConfig, cache: EmbeddingCache, corpora: dict[str, pd.DataFrame],
                clips: dict[str, object]) -> dict[str, object]:
    """`clips` with the recipe's training copies (`train.speed_perturb`, `train.augment`, `train.excerpt_seconds`)
    attached to every clip of its training corpora, each copy encoded once where the cache lacks it; `clips` itself
    when it has none."""
    if not training_copies(cfg.train):
        return clips
    manifest = pd.concat([corpora[c] for c in training_corpora(cfg)], ignore_index=True)
    copied = cache.attach_variants(manifest, [clips[c] for c in manifest["clip_id"]], cfg.train, cfg.model.frame_pool,
                                   progress=True)
    return {**clips, **dict(zip(manifest["clip_id"], copied))}


def _recipe(cfg: ExperimentConfig, spec: CrossCorpusSpec, cv_seeds: list[int], corpora: dict[str, pd.DataFrame],
            clips: dict[str, object], memo: dict, log, sources: dict[str, object] | None = None) -> dict:
    own = training_corpora(cfg)
    loco: dict[str, dict] = {}
    adapt_cost: list[dict] = []
    for seed in spec.seeds:
        # Held-out corpora that leave the same training set share one head (the baseline: RAVDESS → TESS, TurEV).
        plans: dict[tuple[str, ...], list[str]] = {}
        for held in spec.held_out:
            if rest := tuple(c for c in own if c != held):
                plans.setdefault(rest, []).append(held)
        for rest, held in plans.items():
            train = pd.concat([corpora[c] for c in rest], ignore_index=True)
            scores, adaptation = _fit_and_score(cfg, train, clips, seed, {h: corpora[h] for h in held}, memo, sources)
            if adaptation is not None:
                adapt_cost.append({"seed": seed, "trained_on": list(rest), "best_epoch": adaptation.best_epoch,
                                   "seconds": adaptation.seconds})
            for h, s in scores.items():
                loco.setdefault(h, {"trained_on": list(rest), "per_seed": []})["per_seed"].append({"seed": seed, **s})
                log(f"  {cfg.name} seed {seed}: trained on {'+'.join(rest)} → {h} UA {s['ua']:.3f}")
    for row in loco.values():
        uas = [s["ua"] for s in row["per_seed"]]
        row.update(ua_mean=float(np.mean(uas)), ua_std=float(np.std(uas)),
                   neutral_rate=float(np.mean([s["neutral_rate"] for s in row["per_seed"]])),
                   recall={e: float(np.mean([s["recall"][e] for s in row["per_seed"]])) for e in row["per_seed"][0]["recall"]},
                   confusion=np.sum([s["confusion"] for s in row["per_seed"]], axis=0).tolist())
    cv_row, cv_cost = _cv(cfg, cv_seeds, corpora, clips, memo, log, sources)
    return {"trained_on": own, "loco": loco, "cv_seeds": cv_seeds, "cv": cv_row,
            **({"adaptation": adapt_cost + cv_cost} if adapt_cost + cv_cost else {})}


def _cv(cfg: ExperimentConfig, cv_seeds: list[int], corpora: dict[str, pd.DataFrame], clips: dict[str, object],
        memo: dict, log, sources: dict[str, object] | None = None,
        measured: dict[int, dict] | None = None) -> tuple[dict, list[dict]]:
    """The RAVDESS 6-fold CV of a recipe once per seed of `cv_seeds`, the recipe's other corpora as training-only
    data (cv.run_fold never tests them): UA/WA means over seeds, the ± over folds of the seed-averaged folds,
    and each seed's mean and folds ({} for no seeds: not measured yet). A seed in `measured` (`measured_seeds`
    of the stored row) is reused, not trained again. Returns it and the cost of any encoder adaptation."""
    if not cv_seeds:
        return {}, []
    manifest = pd.concat([corpora[c] for c in training_corpora(cfg)], ignore_index=True)
    ordered = [clips[c] for c in manifest["clip_id"]]
    fold_sources = [sources[c] for c in manifest["clip_id"]] if sources is not None else None
    per_seed, cost = [], []
    for seed in cv_seeds:
        if measured and seed in measured:
            per_seed.append(measured[seed])
            log(f"  {cfg.name} seed {seed}: RAVDESS CV measured before, reused")
            continue
        seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        folds = []
        for f in (f for f in EMOBOX_FOLDS if (manifest["fold"] == f).any()):
            folds.append(cv.run_fold(seeded, manifest, ordered, f, stats_memo=memo, sources=fold_sources))
            log(f"  {cfg.name} seed {seed}: RAVDESS fold {f} of {len(EMOBOX_FOLDS)} trained (best epoch {folds[-1].best_epoch})")
        summary = cv.summarise(manifest, folds)
        per_seed.append({"seed": seed, "ua": summary["ua_mean"], "wa": summary["wa_mean"], "per_fold": summary["per_fold"]})
        log(f"  {cfg.name} seed {seed}: RAVDESS CV UA {summary['ua_mean']:.3f} ± {summary['ua_std']:.3f}")
        cost += [{"cv_fold": f.fold, "seed": seed, "best_epoch": f.adaptation.best_epoch, "seconds": f.adaptation.seconds}
                 for f in folds if f.adaptation is not None]
    return over_seeds(per_seed), cost


def over_seeds(per_seed: list[dict]) -> dict:
    """A recipe's CV row from its seeds' means and folds: UA/WA means over seeds, the ± over folds of the
    seed-averaged folds, and the seeds themselves."""
    per_fold = [{"fold": fold["fold"], **{m: float(np.mean([s["per_fold"][i][m] for s in per_seed]))
                                         for m in ("ua", "wa", "macro_f1")}}
                for i, fold in enumerate(per_seed[0]["per_fold"])]
    uas = [f["ua"] for f in per_fold]
    return {"ua_mean": float(np.mean(uas)), "ua_std": float(np.std(uas)),
            "wa_mean": float(np.mean([s["wa"] for s in per_seed])), "per_fold": per_fold, "per_seed": per_seed,
            "seed_std": float(np.std([s["ua"] for s in per_seed]))}


def measured_seeds(row: dict) -> dict[int, dict]:
    """The CV seeds a stored row can give back whole (mean and folds), by seed. A row from before each seed's
    folds were kept gives its only seed back (its folds are that seed's); a multi-seed one gives none."""
    per_seed = row.get("cv", {}).get("per_seed", [])
    if len(per_seed) == 1 and "per_fold" not in per_seed[0]:
        return {per_seed[0]["seed"]: {**per_seed[0], "per_fold": row["cv"]["per_fold"]}}
    return {s["seed"]: s for s in per_seed if "per_fold" in s}


def speaker_probe_of(df: pd.DataFrame, stats: dict[str, np.ndarray]) -> SpeakerProbe:
    """The speaker-normalised probe fit on `df`'s speakers, as `make train` fits it on every RAVDESS actor (with
    several corpora in `df`, each weighs the same). The report scores argmax answers only, so no temperature is
    fit (the coefficients are the same)."""
    return probe.fit_speaker_probe(np.stack([stats[c] for c in df["clip_id"]]), df["label"].to_numpy(),
                                   df["speaker"].to_numpy(), calibration_folds=1, corpora=df["corpus"].to_numpy())


#: The speakers the per-user calibration probe learns from: RAVDESS' actors, as `make train` ships it, or those
#: and every other training corpus' speakers (measured beside it: the report's "every corpus" row).
PROBE_VOICES = ("ravdess", "every corpus")


def probe_training_rows(corpora: dict[str, pd.DataFrame], held: str, voices: str, fold: str | None = None) -> pd.DataFrame:
    """The clips the speaker probe is fit on when `held` is scored: RAVDESS' actors (without `fold`'s when RAVDESS
    is the one scored) and, for voices="every corpus", the speakers of every corpus but `held`."""
    if voices not in PROBE_VOICES:
        raise ValueError(f"voices={voices!r}: one of {PROBE_VOICES}")
    ravdess = corpora["ravdess"] if fold is None else corpora["ravdess"][corpora["ravdess"]["fold"] != fold]
    others = [df for name, df in corpora.items() if name not in ("ravdess", held)] if voices == "every corpus" else []
    return pd.concat([ravdess, *others], ignore_index=True)


def per_user_calibration(corpora: dict[str, pd.DataFrame], stats: dict[str, np.ndarray], held_out: list[str],
                         shipped: SpeakerProbe, enrollment: int = 10, seed: int = 0) -> dict[str, dict]:
    """The shipped per-user calibration (`Predictor.enroll`) on voices it never heard: `shipped`, the probe fit
    on every RAVDESS actor; each held-out clip scored with a profile from `enrollment` other clips of its own
    speaker (never their labels, never the clip itself)."""
    rng = np.random.default_rng(seed)
    out = {}
    for held in (h for h in held_out if h != "ravdess"):
        df = corpora[held].reset_index(drop=True)
        feats = np.stack([stats[c] for c in df["clip_id"]])
        logits = np.zeros((len(df), len(EMOTIONS)))
        for speaker in df["speaker"].unique():
            rows = np.flatnonzero(df["speaker"].to_numpy() == speaker)
            for i in rows:
                others = rows[rows != i]
                profile = SpeakerProfile.from_statistics(feats[rng.choice(others, min(enrollment, len(others)), replace=False)])
                logits[i] = shipped.logits(feats[i], profile)
        out[held] = {"enrollment": enrollment, **score(df, logits)}
    return out


def _stream(probe_model: SpeakerProbe, df: pd.DataFrame, stats: dict[str, np.ndarray],
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each speaker's clips in a random order through a `RunningProfile`, as the service meets them under one
    X-Speaker-Id: the logits of every clip after the first ADAPT_MIN_CLIPS (from the earlier ones only), and
    which rows those are. The first ones are the head's (cold) answers, measured by the LOCO rows."""
    rows, logits = [], []
    speakers = df["speaker"].to_numpy()
    for speaker in pd.unique(speakers):
        voice = RunningProfile()
        for i in rng.permutation(np.flatnonzero(speakers == speaker)):
            x = stats[df["clip_id"].iat[i]]
            if (profile := voice.profile()) is not None:
                rows.append(i)
                logits.append(probe_model.logits(x, profile))
            voice.add(x)
    return np.array(rows, int), np.array(logits)


def adaptation_to_voices(corpora: dict[str, pd.DataFrame], stats: dict[str, np.ndarray], held_out: list[str],
                         seeds: list[int], voices: str = "ravdess") -> dict[str, dict]:
    """Adapting to a voice (`X-Speaker-Id`, `serving.adaptation`) on every held-out corpus: the probe fit on the
    speakers `voices` names (`probe_training_rows`; "ravdess", every RAVDESS actor, is the one shipped) on each
    held-out corpus, and on RAVDESS the probe of each CV fold's training actors on its test actors; each speaker
    streamed once per seed. UA over the answers given after the first ADAPT_MIN_CLIPS recordings of each speaker."""
    def scored(model, df: pd.DataFrame, seed: int) -> dict:
        df = df.reset_index(drop=True)
        rows, logits = _stream(model, df, stats, np.random.default_rng(seed))
        return {"clips": len(rows), **score(df.iloc[rows], logits)}

    def trained_on(rows: pd.DataFrame) -> list[str]:
        return list(pd.unique(rows["corpus"]))

    out: dict[str, dict] = {}
    ravdess = corpora["ravdess"]
    for held in (h for h in held_out if h != "ravdess"):
        rows = probe_training_rows(corpora, held, voices)
        model = speaker_probe_of(rows, stats)
        per_seed = [{"seed": seed, **scored(model, corpora[held], seed)} for seed in seeds]
        out[held] = {"trained_on": trained_on(rows), "per_seed": per_seed}
    if "ravdess" in held_out:  # in domain: the CV's folds, each probe from its training actors only
        folds = [f for f in EMOBOX_FOLDS if (ravdess["fold"] == f).any()]
        models = {f: speaker_probe_of(probe_training_rows(corpora, "ravdess", voices, f), stats) for f in folds}
        per_seed = []
        for seed in seeds:
            per_fold = [scored(models[f], ravdess[ravdess["fold"] == f], seed)["ua"] for f in folds]
            per_seed.append({"seed": seed, "ua": float(np.mean(per_fold)), "per_fold": per_fold})
        others = trained_on(probe_training_rows(corpora, "ravdess", voices))[1:]
        out["ravdess"] = {"trained_on": ["ravdess (other folds' actors)", *others], "per_seed": per_seed,
                          "fold_std": float(np.mean([np.std(s["per_fold"]) for s in per_seed]))}
    for row in out.values():
        uas = [s["ua"] for s in row["per_seed"]]
        row.update(ua_mean=float(np.mean(uas)), ua_std=float(np.std(uas)), min_clips=ADAPT_MIN_CLIPS)
        if "recall" in row["per_seed"][0]:
            row["recall"] = {e: float(np.mean([s["recall"][e] for s in row["per_seed"]])) for e in row["per_seed"][0]["recall"]}
            row["neutral_rate"] = float(np.mean([s["neutral_rate"] for s in row["per_seed"]]))
    return out


def _all_labels(clf, x: np.ndarray) -> np.ndarray:
    """[n, 8] logits of a probe, -inf for a label it never saw in training (an answer it cannot give)."""
    logits = np.full((len(x), len(EMOTIONS)), -np.inf)
    logits[:, clf.classes_] = clf.decision_function(x)
    return logits


def within_corpus(corpora: dict[str, pd.DataFrame], stats: dict[str, np.ndarray], held_out: list[str]) -> dict[str, dict]:
    """For scale: each held-out corpus learnt from its own labels — the linear probe trained on its other
    speakers, scored on each speaker in turn (RAVDESS: its EmoBox folds). What the corpus' own data teaches
    without a new voice's labels; the leave-one-corpus-out rows are measured against it."""
    out = {}
    for held in held_out:
        df = corpora[held].reset_index(drop=True)
        groups = df["fold"].to_numpy() if held == "ravdess" else df["speaker"].to_numpy()
        feats = np.stack([stats[c] for c in df["clip_id"]])
        logits = np.full((len(df), len(EMOTIONS)), -np.inf)
        for g in pd.unique(groups):
            test = groups == g
            logits[test] = _all_labels(probe.fit_probe(feats[~test], df["label"].to_numpy()[~test]), feats[test])
        out[held] = {"groups": "EmoBox folds" if held == "ravdess" else "speakers", "n_groups": int(len(pd.unique(groups))),
                     **score(df, logits)}
    return out


def transfer_diagnosis(corpora: dict[str, pd.DataFrame], stats: dict[str, np.ndarray],
                       held_out: list[str]) -> dict[str, dict]:
    """Where a voice it never heard is lost: the linear probe fit on every RAVDESS clip, scored on each other
    held-out corpus (a) as served, 8-way; (b) its answer restricted to the corpus' own classes (what the 8-way
    prior costs; never below (a)); (c) restricted, after the corpus' mean feature is moved onto RAVDESS' with all
    its unlabeled clips (what normalising to the corpus without its labels gives this linear view)."""
    if "ravdess" not in corpora:
        return {}
    ravdess = corpora["ravdess"]
    train = np.stack([stats[c] for c in ravdess["clip_id"]])
    clf = probe.fit_probe(train, ravdess["label"].to_numpy())
    out = {}
    for held in (h for h in held_out if h != "ravdess"):
        df = corpora[held].reset_index(drop=True)
        feats = np.stack([stats[c] for c in df["clip_id"]])
        outside = ~class_mask([held])[0]
        logits, moved = _all_labels(clf, feats), _all_labels(clf, feats - feats.mean(0) + train.mean(0))
        out[held] = {"as_served": score(df, logits)["ua"], "own_classes": score(df, np.where(outside, -np.inf, logits))["ua"],
                     "own_classes_mean_moved": score(df, np.where(outside, -np.inf, moved))["ua"],
                     "chance": 1 / len(CORPORA[held].classes)}
    return out


def no_speech_rates(corpora: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Share of each corpus' clips the served voice-activity decision calls silent (`no_speech`)."""
    return {name: float(np.mean([not speech_segments(load_audio(p)) for p in df["path"]])) for name, df in corpora.items()}


def stored_row(measured: list[dict], key: dict) -> dict:
    """A copy of the row measured before with these settings (`key`), or {}."""
    return next((json.loads(json.dumps(row)) for row in measured if all(row.get(k) == v for k, v in key.items())), {})


def _features(cache: EmbeddingCache, union: pd.DataFrame, base: ExperimentConfig, recipes: list[ExperimentConfig],
              progress: bool) -> tuple[EmbeddingCache, dict, dict, dict]:
    """One pass over `cache` (built where it lacks a clip): the head's pooled view and the probe's statistics
    (encoder rate) of every clip, and for recipes that adapt the top n encoder layers, the encoder-rate state
    those layers read."""
    cache.build(union, progress=progress)
    clips, stats = {}, {}
    sources: dict[int, dict[str, object]] = {cfg.adapt.layers: {} for cfg in recipes if cfg.adapt.layers}
    for clip_id, clip in zip(union["clip_id"], cache.iter(union, progress=progress)):
        # pooled as the head prepares them, so every fit gets these very objects and the stats memo serves all folds
        clips[clip_id] = clip.pooled(base.model.frame_pool, base.model.mel_pool)
        stats[clip_id] = clip_statistics(clip)
        for n, rows in sources.items():
            rows[clip_id] = source_state(clip, base.adapt.model_copy(update={"layers": n}))
    return cache, clips, stats, sources


def judge(rows: list[dict], held_out: list[str]) -> list[str]:
    """Apply the rule to measured recipes (`rows[0]` the baseline), in place: each row's leave-one-corpus-out
    mean and its seed spread; each candidate's gain, CV change (on the seeds both were measured with), the
    parts of the rule it fails (`fails`) and `adopt`. Returns the held-out corpora every row could be scored on
    (the means are over these, so rows compare like with like: a RAVDESS-only recipe cannot hold RAVDESS out)."""
    comparable = [h for h in held_out if all(h in row["loco"] for row in rows)]
    for row in rows:
        row["loco_mean"] = float(np.mean([row["loco"][h]["ua_mean"] for h in comparable])) if comparable else None
        # the seed spread of the mean: a gain within it is a tie, however large the rule's margin
        row["loco_mean_seed_std"] = float(np.std([np.mean([s["ua"] for s in per_seed]) for per_seed in zip(
            *(row["loco"][h]["per_seed"] for h in comparable))])) if comparable else None
    baseline_cv = {s["seed"]: s["ua"] for s in rows[0]["cv"].get("per_seed", [])}
    for row in rows[1:]:
        gain = row["loco_mean"] - rows[0]["loco_mean"] if comparable else 0.0
        spread = max(row["loco_mean_seed_std"], rows[0]["loco_mean_seed_std"]) if comparable else 0.0
        # a costly candidate may be measured on fewer CV seeds: compared with the baseline on those
        paired = [s["ua"] - baseline_cv[s["seed"]] for s in row["cv"].get("per_seed", []) if s["seed"] in baseline_cv]
        row["loco_gain"] = gain
        # the parts of the rule it fails ("tie" only names a gain the seed spread swallows, not a loss)
        held_out_fails = [part for part, failed in (("gain", gain < ADOPT_LOCO_GAIN), ("tie", 0 < gain <= spread))
                          if failed]
        if not row["cv"]:  # its CV not measured yet: rejected if its held-out half fails, else undecided
            row.update(cv_change=None, cv_change_seed_std=None, fails=held_out_fails or None, adopt=False)
            continue
        row["cv_change"] = float(np.mean(paired)) if paired else row["cv"]["ua_mean"] - rows[0]["cv"]["ua_mean"]
        row["cv_change_seed_std"] = float(np.std(paired)) if len(paired) > 1 else None
        row["fails"] = held_out_fails + (["cv_loss"] if -row["cv_change"] > MAX_CV_LOSS else [])
        row["adopt"] = not row["fails"]
    rows[0]["adopt"] = False
    return comparable


def run(spec: CrossCorpusSpec, progress: bool = True) -> dict:
    start = time.perf_counter()
    log = print if progress else (lambda *_: None)
    base = load_config(spec.base)
    recipes = [("baseline: " + base.name + " (as served)", [], base, spec.cv_seeds)] + [
        (c.name, c.set_, load_config(spec.base, [*c.set_, f"name={base.name}-crosscorpus-{i:02d}"]),
         spec.cv_seeds if c.cv_seeds is None else c.cv_seeds)
        for i, c in enumerate(spec.candidates)]
    for name, _, cfg, _ in recipes[1:]:  # every recipe reads one pooled view of the features
        if (cfg.model.frame_pool, cfg.model.mel_pool) != (base.model.frame_pool, base.model.mel_pool):
            raise ValueError(f"candidate {name!r}: model.frame_pool and model.mel_pool must be the base's "
                             "(make ablate compares poolings)")
    everything = sorted({*spec.held_out, *training_corpora(base),
                         *(c for cand in spec.candidates for c in training_corpora(load_config(spec.base, cand.set_)))})
    corpora = {name: cap_samples(CORPORA[name].read(), spec.max_clips) if name != "ravdess" else load_manifest(
        base.data.model_copy(update={"extra_train": []})) for name in everything}
    union = pd.concat(corpora.values(), ignore_index=True)
    # Recipes behind another front end (encoder.level_dbfs, encoder.min_seconds) read other cached features:
    # one front end's corpus is held at a time (each is several GB), and only for recipes not measured before.
    features: dict[FrontEnd, tuple] = {}
    memo: dict = {}  # per-clip statistics the heads share, keyed by the clip objects of the front end held

    def features_of(cfg: ExperimentConfig) -> tuple:
        if (front := FrontEnd.of(cfg.encoder)) not in features:
            features.clear()
            memo.clear()
            features[front] = _features(EmbeddingCache.of(cfg), union, base, [c for _, _, c, _ in recipes
                                                                              if FrontEnd.of(c.encoder) == front], progress)
        return features[front]

    def measure(cfg: ExperimentConfig, cv_seeds: list[int], cv_only: bool = False,
                measured: dict[int, dict] | None = None) -> dict:
        # in a function of its own: the clips it trained on are let go before another front end's are read
        if cv_only and set(cv_seeds) <= set(measured or {}):  # every seed stored: nothing to load
            return {"cv_seeds": cv_seeds, "cv": over_seeds([measured[seed] for seed in cv_seeds]), "cv_cost": []}
        own_cache, own_clips, _, own_sources = features_of(cfg)
        clips = with_copies(cfg, own_cache, corpora, own_clips)
        if cv_only:
            cv_row, cost = _cv(cfg, cv_seeds, corpora, clips, memo, log, own_sources.get(cfg.adapt.layers), measured)
            return {"cv_seeds": cv_seeds, "cv": cv_row, "cv_cost": cost}
        return _recipe(cfg, spec, cv_seeds, corpora, clips, memo, log, own_sources.get(cfg.adapt.layers))

    _, _, stats, _ = features_of(base)
    silent = no_speech_rates({h: corpora[h] for h in spec.held_out})
    reference = within_corpus(corpora, stats, spec.held_out)
    transfer = transfer_diagnosis(corpora, stats, spec.held_out)
    calibrated, adapted, adapted_every = {}, {}, {}
    if "ravdess" in corpora:  # the speaker probe `make train` ships; beside it, one that hears every corpus
        calibrated = per_user_calibration(corpora, stats, spec.held_out, speaker_probe_of(corpora["ravdess"], stats))
        adapted = adaptation_to_voices(corpora, stats, spec.held_out, spec.seeds)
        if len(corpora) > 1:
            adapted_every = adaptation_to_voices(corpora, stats, spec.held_out, spec.seeds, "every corpus")
    tracking.setup("crosscorpus")
    rows = []
    stored = reports_dir(base) / "crosscorpus"
    stored.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_name=f"crosscorpus-{base.name}") as parent:
        mlflow.set_tags({"config": base.name, "kind": "crosscorpus"})
        # read before any is rewritten: a re-based run moves rows between files
        measured = [json.loads(p.read_text()) for p in sorted(stored.glob("*.json"))]
        kept: set[Path] = set()
        for i, (name, overrides, cfg, cv_seeds) in enumerate(recipes):
            # One result file per recipe: an interrupted run resumes, and a recipe measured with the same
            # settings, held-out corpora and seeds is reused (as the ablation rows are), under whatever name
            # it had: the served recipe re-based onto a candidate keeps that candidate's measurements.
            path = stored / f"{i:02d}-{slug(name)}.json"
            key = {"fingerprint": fingerprint(cfg), "held_out": spec.held_out, "seeds": spec.seeds,
                   "max_clips": spec.max_clips}
            row = stored_row(measured, key)
            if row:
                row.update(name=name, set=overrides)
                # a row from before `cv_seeds` was measured with the recipe's own seed
                if row.get("cv_seeds", [cfg.train.seed]) == cv_seeds:
                    log(f"{name}: measured before, reused ({path.name})")
                else:
                    log(f"{name}: held-out corpora measured before ({path.name}); the RAVDESS CV over seeds {cv_seeds}")
                    reused = {seed: s for seed, s in measured_seeds(row).items() if seed in cv_seeds}
                    fresh = measure(cfg, cv_seeds, cv_only=True, measured=reused)
                    cost = [a for a in row.pop("adaptation", []) if "cv_fold" not in a or a["seed"] in reused] + fresh.pop("cv_cost")
                    row.update(fresh, **({"adaptation": cost} if cost else {}))
            else:
                log(f"{name}")
                row = {"name": name, "set": overrides, **key, **measure(cfg, cv_seeds)}
            path.write_text(json.dumps(row, indent=1))
            rows.append(row)
            kept.add(path)
        for path in set(stored.glob("*.json")) - kept:  # recipes no longer in the spec (git keeps them)
            path.unlink()
        for i, row in enumerate(rows):
            mlflow.log_metrics({**({f"recipe{i}_cv_ua": row["cv"]["ua_mean"]} if row["cv"] else {}),
                                **{f"recipe{i}_loco_{h}_ua": c["ua_mean"] for h, c in row["loco"].items()}})
    comparable = judge(rows, spec.held_out)
    report = {"config": base.name, "run_id": parent.info.run_id, "encoder": base.encoder.name, "seeds": spec.seeds,
              "cv_seeds": spec.cv_seeds, "held_out": spec.held_out, "comparable": comparable,
              "corpora": {n: {"clips": len(df), "speakers": int(df["speaker"].nunique()), "language": CORPORA[n].language,
                              "classes": list(CORPORA[n].classes), "what": CORPORA[n].what,
                              **({"no_speech_rate": silent[n]} if n in silent else {})} for n, df in corpora.items()},
              "recipes": rows, "within_corpus": reference, "transfer": transfer, "per_user_calibration": calibrated, "adaptation": adapted,
              **({"adaptation_every_corpus": adapted_every} if adapted_every else {}), "rule": {"loco_gain": ADOPT_LOCO_GAIN, "max_cv_loss": MAX_CV_LOSS},
              "seconds": round(time.perf_counter() - start, 1)}
    write(report, reports_dir(base))
    with mlflow.start_run(run_id=parent.info.run_id):
        mlflow.log_artifacts(str(reports_dir(base) / "crosscorpus"), "report/crosscorpus")
        for name in ("crosscorpus.json", "crosscorpus.md"):
            mlflow.log_artifact(str(reports_dir(base) / name), "report")
    return report


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "crosscorpus").glob("*.png"):  # a dropped recipe's figures go with it
        old.unlink()
    for row in report["recipes"]:
        for held, cell in row["loco"].items():
            stem = "baseline" if row is report["recipes"][0] else f"candidate{report['recipes'].index(row)}"
            cell["figure"] = str(metrics.plot_confusion(np.array(cell["confusion"]), out / "crosscorpus" / f"{stem}-{held}.png",
                                                        f"{row['name'][:40]}: held-out {held}").relative_to(out))
    (out / "crosscorpus.json").write_text(json.dumps(report, indent=2))
    (out / "crosscorpus.md").write_text(crosscorpus_markdown(report))
