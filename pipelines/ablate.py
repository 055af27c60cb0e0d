"""`make ablate`: one 6-fold CV per row of experiments/ablations.yaml → reports/<base>/ablations.md
(emotion_core/research/ablation.py); rows already measured with the same config are reused."""

import argparse

from emotion_core.config import EXPERIMENTS_DIR
from emotion_core.research import ablation
from emotion_core.research.reporting import update_generated_section

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--file", default=str(EXPERIMENTS_DIR / "ablations.yaml"))
    p.add_argument("--rows", type=int, nargs="*", help="only these row numbers (0-based)")
    args = p.parse_args()
    spec = ablation.load_ablations(args.file)
    lines = ablation.run(spec, args.rows)
    if spec.base == "default":
        update_generated_section("ablations", ablation.readme_block(lines))
    print("\n".join(lines))
