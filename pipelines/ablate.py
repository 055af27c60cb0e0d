"""Ablation table: the default config with one change per row (experiments/ablations.yaml), each measured
by the same 6-fold actor-held-out CV → reports/<base>/ablations.md. Rows already measured are reused
(the table is rebuilt from reports/<base>/ablations/*.json), so an interrupted run resumes."""

import argparse
import json
import re

import yaml

from emotion_core import cv
from emotion_core.config import EXPERIMENTS_DIR, load_config
from emotion_core.steps import reports_dir

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--file", default=str(EXPERIMENTS_DIR / "ablations.yaml"))
    p.add_argument("--rows", type=int, nargs="*", help="only these row numbers (0-based)")
    args = p.parse_args()
    spec = yaml.safe_load(open(args.file))
    base = load_config(spec["base"])
    out = reports_dir(base) / "ablations"
    out.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(spec["rows"]):
        slug = f"{i:02d}-" + re.sub(r"[^a-z0-9]+", "-", row["name"].lower()).strip("-")[:40]
        if (args.rows is not None and i not in args.rows) or (out / f"{slug}.json").exists():
            continue
        main_report = reports_dir(base) / "cv.json"
        if not row["set"] and main_report.exists():  # the unchanged config: reuse `make crossval`'s run
            report = json.loads(main_report.read_text())
        else:
            cfg = load_config(spec["base"], [*row["set"], f"name={base.name}-ablation-{i:02d}"])
            report = cv.run(cfg, random_split_check=False, adapted=(), progress=True)
        (out / f"{slug}.json").write_text(json.dumps({"name": row["name"], "set": row["set"], "head": report["head"],
                                                      "probe": report["probe"], "run_id": report["run_id"]}, indent=2))
    lines = ["# Ablations (6-fold actor-held-out CV UA, mean ± std over folds)", "",
             f"Base config `{base.name}`; each row changes what it says. Written by `make ablate`.", "",
             "| change | head UA | probe UA (same folds, same training rows) |", "|---|---|---|"]
    for path in sorted(out.glob("*.json")):
        r = json.loads(path.read_text())
        lines.append(f"| {r['name']} | {r['head']['ua_mean']:.1%} ± {r['head']['ua_std']:.1%} | {r['probe']['ua_mean']:.1%} |")
    (reports_dir(base) / "ablations.md").write_text("\n".join(lines) + "\n")
    if base.name == "default":
        from emotion_core.reporting import update_generated_section

        update_generated_section("ablations", "\n".join(lines[4:]) + "\n\nWritten by `make ablate` into "
                                 "[`reports/default/ablations.md`](reports/default/ablations.md).")
    print("\n".join(lines))
