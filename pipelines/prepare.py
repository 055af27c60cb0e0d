"""Build the clip manifest of a config (RAVDESS shared/original layout, or a HF dataset), log it to MLflow."""

from __future__ import annotations

import sys

from emotion_core.research import steps
from pipelines._cli import config_from, parser


def main(argv: list[str] | None = None) -> int:
    result = steps.prepare(config_from(parser(__doc__).parse_args(argv)))
    print(result["summary"])
    print(f"\nmanifest: {result['manifest']}  (MLflow run {result['run_id']}, experiment 'prepare')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
