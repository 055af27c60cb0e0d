"""How many Whisper-base layers does emotion need? Linear-probe UA with hidden states 0..k, k = 3..6.

    python -m pipelines.layer_probe            # → reports/layer_probe.{json,md}

Same probe as `emotion_core.research.probe` (per layer mean ‖ std over frames, standardised, LogisticRegression
C=0.01), scored on the six EmoBox actor-held-out folds of RAVDESS from the existing fp32 embedding cache
(`python -m pipelines.embed` first). The encoder can stop after k layers
(`load_encoder("whisper-base", layers=k + 1)`), which saves (6 - k)/6 of the transformer's compute;
whether the head may drop the top layers is a modelling decision, so this only reports the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emotion_core.config import REPORTS_DIR, data_dir, load_config
from emotion_core.data import EMOBOX_FOLDS, read_ravdess
from emotion_core.research.cache import EmbeddingCache
from emotion_core.research.metrics import summary
from emotion_core.research.probe import fit_probe, pooled


def run(ks: list[int], C: float = 0.01) -> dict:
    manifest = read_ravdess(data_dir() / "ravdess")
    cache = EmbeddingCache.of(load_config("default"))  # the served recipe's features
    encoder = cache.encoder
    clips = cache.load(manifest)
    features = pooled(clips)  # [N, 7 * 1024]: layer-major, mean ‖ std per layer
    per_layer = features.shape[1] // encoder.num_layers
    labels = manifest["label"].to_numpy()
    actors = manifest["actor"].to_numpy()
    rows = []
    for k in ks:
        cols = slice(0, (k + 1) * per_layer)
        fold_ua = []
        started = time.perf_counter()
        for test_actors in EMOBOX_FOLDS.values():
            test = np.isin(actors, test_actors)
            clf = fit_probe(features[~test, cols], labels[~test], C=C)
            fold_ua.append(summary(labels[test], clf.predict(features[test, cols]))["ua"])
        rows.append({"layers": f"0..{k}", "k": k, "ua_mean": float(np.mean(fold_ua)), "ua_std": float(np.std(fold_ua)),
                     "fold_ua": [round(float(u), 4) for u in fold_ua], "seconds": round(time.perf_counter() - started, 1)})
        print(f"layers 0..{k}: UA {np.mean(fold_ua):.1%} ± {np.std(fold_ua):.1%}", flush=True)
    return {"probe": f"mean+std pooled, StandardScaler + LogisticRegression(C={C}), 6 EmoBox folds (4 test actors each)",
            "clips": len(manifest), "encoder_fingerprint": encoder.fingerprint, "rows": rows}


def markdown(result: dict) -> str:
    lines = ["| hidden states | encoder layers run | UA (mean ± std over 6 folds) | per fold |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['layers']} | {r['k']} of 6 | {r['ua_mean']:.1%} ± {r['ua_std']:.1%} | "
                     f"{', '.join(f'{u:.1%}' for u in r['fold_ua'])} |")
    return f"Linear probe ({result['probe']}), {result['clips']} RAVDESS clips.\n\n" + "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[3, 4, 5, 6])
    p.add_argument("--C", type=float, default=0.01)
    p.add_argument("--out", type=Path, default=REPORTS_DIR)
    args = p.parse_args()
    result = run(args.k, args.C)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "layer_probe.json").write_text(json.dumps(result, indent=2))
    (args.out / "layer_probe.md").write_text("# How many encoder layers?\n\n" + markdown(result))
    print(markdown(result))
