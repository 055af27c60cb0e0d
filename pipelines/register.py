"""Register the best evaluated train run's model as emotion-cnn@champion."""

import argparse

from emotion_core import steps
from pipelines._cli import show

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metric", default="test_ua", help="run metric to rank by (default: test_ua)")
    show(steps.register(p.parse_args().metric))
