"""Ablation table: the default config with one change per row (experiments/ablations.yaml), each measured
by the same 6-fold actor-held-out CV → reports/<base>/ablations.md. Rows already measured are reused
(the table is rebuilt from reports/<base>/ablations/*.json), so an interrupted run resumes; a row whose
config changed since (its fingerprint, e.g. after a change to the default config) is measured again."""

import argparse
import json
import re

import yaml

from emotion_core import cv
from emotion_core.config import EXPERIMENTS_DIR, fingerprint, load_config
from emotion_core.steps import reports_dir


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--file", default=str(EXPERIMENTS_DIR / "ablations.yaml"))
    p.add_argument("--rows", type=int, nargs="*", help="only these row numbers (0-based)")
    args = p.parse_args()
    spec = yaml.safe_load(open(args.file))
    base = load_config(spec["base"])
    out = reports_dir(base) / "ablations"
    out.mkdir(parents=True, exist_ok=True)
    # (row, its result file, its config) for every row of the file
    rows = [(row, out / f"{i:02d}-{slug(row['name'])}.json",
             load_config(spec["base"], [*row["set"], f"name={base.name}-ablation-{i:02d}"])) for i, row in enumerate(spec["rows"])]
    for gone in set(out.glob("*.json")) - {path for _, path, _ in rows}:
        gone.unlink()  # a row no longer in the file

    def measured(path) -> dict | None:
        return json.loads(path.read_text()) if path.exists() else None

    def current(result: dict | None, cfg) -> bool:
        """Measured with this very config (a result without a fingerprint predates them)."""
        return result is not None and result.get("fingerprint") == fingerprint(cfg)

    main = measured(reports_dir(base) / "cv.json")
    for i, (row, path, cfg) in enumerate(rows):
        if (args.rows is not None and i not in args.rows) or current(measured(path), cfg):
            continue
        if current(main, cfg):  # the unchanged config: reuse `make crossval`'s run
            report = main
        else:
            report = cv.run(cfg, random_split_check=False, adapted=(), progress=True)
        path.write_text(json.dumps({"name": row["name"], "set": row["set"], "fingerprint": fingerprint(cfg),
                                    "head": report["head"], "probe": report["probe"], "run_id": report["run_id"]}, indent=2))
    lines = ["# Ablations (6-fold actor-held-out CV UA, mean ± std over folds)", "",
             f"Base config `{base.name}`; each row changes what it says. Written by `make ablate`.", "",
             "| change | head UA | probe UA (same folds, same training rows) |", "|---|---|---|"]
    for row, path, cfg in rows:
        if (r := measured(path)) is None:
            lines.append(f"| {row['name']} | not measured yet (`make ablate`) | |")
            continue
        stale = "" if current(r, cfg) else " (stale: measured before a config change; `make ablate` re-measures it)"
        lines.append(f"| {r['name']}{stale} | {r['head']['ua_mean']:.1%} ± {r['head']['ua_std']:.1%} | {r['probe']['ua_mean']:.1%} |")
    (reports_dir(base) / "ablations.md").write_text("\n".join(lines) + "\n")
    if base.name == "default":
        from emotion_core.reporting import update_generated_section

        update_generated_section("ablations", "\n".join(lines[4:]) + "\n\nWritten by `make ablate` into "
                                 "[`reports/default/ablations.md`](reports/default/ablations.md).")
    print("\n".join(lines))
