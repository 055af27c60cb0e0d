"""`python -m emotion_core.inference FILE [--model URI]` — the seed's one-file entry point: prints the
prediction as JSON (the same body `POST /predict-emotion/` returns)."""

from __future__ import annotations

import argparse
import sys

from emotion_core.audio import AudioError
from emotion_core.serving.predictor import Predictor


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotion_core.inference", description=__doc__)
    p.add_argument("file")
    p.add_argument("--model", default=None, help="model URI or directory (default: models:/emotion-cnn@champion)")
    args = p.parse_args(argv)
    try:
        print(Predictor.from_uri(args.model).predict(args.file).model_dump_json(indent=2))
    except (AudioError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
