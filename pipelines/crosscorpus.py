"""Voices the model has never heard: leave-one-corpus-out + the RAVDESS CV with other corpora as training-only
data, the served recipe as the baseline row → reports/<base>/crosscorpus.{json,md} (experiments/crosscorpus.yaml)."""

import argparse

from emotion_core.config import EXPERIMENTS_DIR
from emotion_core.research import crosscorpus
from emotion_core.research.reporting import crosscorpus_readme_text, update_generated_section

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default=str(EXPERIMENTS_DIR / "crosscorpus.yaml"))
    report = crosscorpus.run(crosscorpus.load_spec(parser.parse_args().spec))
    if report["config"] == "default":
        update_generated_section("crosscorpus", crosscorpus_readme_text(report))
    print(f"wrote reports/{report['config']}/crosscorpus.md")
