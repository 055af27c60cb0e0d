"""The ablation table: the base config with one change per row (`experiments/ablations.yaml`), each row measured
by the same 6-fold actor-held-out CV → reports/<base>/ablations.md. Rows already measured are reused (the
table is rebuilt from reports/<base>/ablations/*.json), so an interrupted run resumes; a row whose config
changed since (its fingerprint, e.g. after a change to the default config) is measured again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from emotion_core.config import ExperimentConfig, fingerprint, load_config, reports_dir
from emotion_core.research import cv
from emotion_core.research.reporting import adaptation_cost


class AblationRow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str
    #: `section.key=value` overrides of the base config (empty: the base itself).
    set_: list[str] = Field([], alias="set")


class AblationsSpec(BaseModel):
    """`experiments/ablations.yaml`."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str = "default"
    rows: list[AblationRow]


def load_ablations(path: str | Path) -> AblationsSpec:
    return AblationsSpec.model_validate(yaml.safe_load(Path(path).read_text()) or {})


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]


def _measured(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _current(result: dict | None, cfg: ExperimentConfig) -> bool:
    """Measured with this very config (a result without a fingerprint predates them)."""
    return result is not None and result.get("fingerprint") == fingerprint(cfg)


def _rows(spec: AblationsSpec) -> tuple[ExperimentConfig, list[tuple[AblationRow, Path, ExperimentConfig]]]:
    """The base config, and for every row of the file: (row, its result file, its config)."""
    base = load_config(spec.base)
    out = reports_dir(base) / "ablations"
    return base, [(row, out / f"{i:02d}-{slug(row.name)}.json",
                   load_config(spec.base, [*row.set_, f"name={base.name}-ablation-{i:02d}"])) for i, row in enumerate(spec.rows)]


def run(spec: AblationsSpec, only: list[int] | None = None) -> list[str]:
    """Measure the rows that lack a current result (or only the rows `only`), write ablations.md; its lines."""
    base, rows = _rows(spec)
    out = reports_dir(base) / "ablations"
    out.mkdir(parents=True, exist_ok=True)
    for gone in set(out.glob("*.json")) - {path for _, path, _ in rows}:
        gone.unlink()  # a row no longer in the file
    main = _measured(reports_dir(base) / "cv.json")
    for i, (row, path, cfg) in enumerate(rows):
        if (only is not None and i not in only) or _current(_measured(path), cfg):
            continue
        # the unchanged config: reuse `make crossval`'s run
        report = main if _current(main, cfg) else cv.run(cfg, random_split_check=False, adapted=(), progress=True)
        path.write_text(json.dumps({"name": row.name, "set": row.set_, "fingerprint": fingerprint(cfg),
                                    "head": report["head"], "probe": report["probe"], "run_id": report["run_id"],
                                    **({"adaptation": report["adaptation"]} if "adaptation" in report else {})}, indent=2))
    lines = table(spec)
    (reports_dir(base) / "ablations.md").write_text("\n".join(lines) + "\n")
    return lines


def table(spec: AblationsSpec) -> list[str]:
    """ablations.md's lines, from the stored rows (a row without a result, or measured with another config, says so)."""
    base, rows = _rows(spec)
    lines = ["# Ablations (6-fold actor-held-out CV UA, mean ± std over folds)", "",
             f"Base config `{base.name}`; each row changes what it says. Written by `make ablate`.", "",
             "| change | head UA | probe UA (same folds, same training rows) |", "|---|---|---|"]
    for row, path, cfg in rows:
        if (r := _measured(path)) is None:
            lines.append(f"| {row.name} | not measured yet (`make ablate`) | |")
            continue
        stale = "" if _current(r, cfg) else " (stale: measured before a config change; `make ablate` re-measures it)"
        cost = f" ({adaptation_cost(ad)})" if (ad := r.get("adaptation")) else ""
        lines.append(f"| {r['name']}{stale}{cost} | {r['head']['ua_mean']:.1%} ± {r['head']['ua_std']:.1%} | {r['probe']['ua_mean']:.1%} |")
    return lines


def readme_block(lines: list[str]) -> str:
    """The generated `ablations` block of docs/results.md: the table of ablations.md."""
    return "\n".join(lines[4:]) + "\n\nWritten by `make ablate` into [`reports/default/ablations.md`](../reports/default/ablations.md)."
