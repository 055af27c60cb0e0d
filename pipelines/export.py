"""Export the serving encoder to ONNX (int8), check it against the fp32 torch path, store it with the model.

    python -m pipelines.export                      # champion: export + validate + log + tag
    python -m pipelines.export --clips 240          # quicker check on every 6th clip (default: all 1440)
    python -m pipelines.export --download DIR       # fetch the champion's ONNX files → EMOTION_ONNX_DIR=DIR

1. Builds (or reuses) the cached export for the model's encoder layers (`encoders/onnx/export.py`).
2. Validates it where it matters — the full predictor's output: top-1 agreement and the largest probability
   difference between the ONNX path and the fp32 torch path on RAVDESS clips. Below `--min-agreement`
   (99 %) it stops with exit code 1 and tags nothing. Every clip by default (~2.5 min): on a 240-clip
   sample the agreement's standard error is ~0.6 pt, so a head that agrees on 99.2 % of the corpus
   (emotion-cnn v7: 12 of 1415) failed the check with 5 of its 238.
3. Logs the ONNX file, its sidecar (sha256, versions, fp32 linears) and the validation as artifacts
   `onnx/` of the model's training run, and tags the registered version (`onnx.sha256`, `onnx.artifact`,
   `onnx.top1_agreement`, …), so the registry records which encoder file was validated with which head.

The export depends only on the encoder weights (fingerprint), not on the head, so every process builds the
same file in its cache on first use; the logged copy is the audited one, for machines that should not
export (`--download`, then `EMOTION_ONNX_DIR`). The service needs none of this to use ONNX.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emotion_core.config import model_uri
from emotion_core.serving.release import download, export


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-uri", default=None, help="default: $EMOTION_MODEL_URI or models:/emotion-cnn@champion")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    p.add_argument("--clips", type=int, default=1440, help="RAVDESS clips to validate on (spread over all actors; default all)")
    p.add_argument("--min-agreement", type=float, default=0.99)
    p.add_argument("--no-log", action="store_true", help="export and validate only")
    p.add_argument("--download", type=Path, metavar="DIR", help="fetch the logged ONNX files instead")
    args = p.parse_args(argv)
    uri = args.model_uri or model_uri()
    if args.download:
        path = download(uri, args.download)
        print(f"{path}\nserve with: EMOTION_ONNX_DIR={path.parent} make serve")
        return 0
    result = export(uri, args.clips, args.precision, args.min_agreement, log=not args.no_log)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
