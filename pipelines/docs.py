"""`make docs`: rewrite every generated block of the README and docs/ from the committed reports (no measuring).

The pipelines rewrite their own block when they run; this renders all of them again, and the unit test
tests/unit/test_generated_blocks.py fails while a block differs from what its report says.
"""

from __future__ import annotations

import json
import sys

from bench.report import readme_text as benchmark_text
from emotion_core.config import EXPERIMENTS_DIR, REPORTS_DIR
from emotion_core.research import ablation
from emotion_core.research.reporting import (
    GENERATED_BLOCKS,
    crosscorpus_readme_text,
    cv_readme_text,
    update_generated_section,
)
from emotion_core.research.tuning.report import readme_line


def expected_blocks() -> dict[str, str]:
    """Block name → the text its committed report renders to (blocks whose report is missing are left out)."""
    def report(path):
        return json.loads(path.read_text()) if path.exists() else None

    out = {}
    if cv := report(REPORTS_DIR / "default" / "cv.json"):
        out["evaluation"] = cv_readme_text(cv)
    if cross := report(REPORTS_DIR / "default" / "crosscorpus.json"):
        out["crosscorpus"] = crosscorpus_readme_text(cross)
    if bench := report(REPORTS_DIR / "benchmark.json"):
        out["benchmark"] = benchmark_text(bench)
    if tune := report(REPORTS_DIR / "default" / "tune.json"):
        out["tuning"] = readme_line(tune)
    out["ablations"] = ablation.readme_block(ablation.table(ablation.load_ablations(EXPERIMENTS_DIR / "ablations.yaml")))
    assert set(out) <= set(GENERATED_BLOCKS)
    return out


if __name__ == "__main__":
    for name, text in expected_blocks().items():
        print(f"{name}: {'rewritten' if update_generated_section(name, text) else 'no markers in ' + GENERATED_BLOCKS[name]}")
    sys.exit(0)
