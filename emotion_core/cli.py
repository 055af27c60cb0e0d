"""`emotion-detect FILE_OR_DIR... [--json|--csv]`: predict emotions for audio files and folders."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Iterator

from emotion_core.labels import EMOTIONS

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".webm", ".opus", ".3gp"}


def iter_audio_files(targets: list[str]) -> Iterator[Path]:
    """Files as given; folders walked recursively for audio files (sorted, so output is stable)."""
    for target in map(Path, targets):
        if target.is_dir():
            yield from sorted(p for p in target.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            yield target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emotion-detect", description=__doc__)
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON array of results")
    fmt.add_argument("--csv", action="store_true", help="CSV with one probability column per emotion")
    p.add_argument("--model", default=None, help="model URI or directory (default: $EMOTION_MODEL_URI or models:/emotion-cnn@champion)")
    p.add_argument("--enroll", action="append", default=[], metavar="FILE_OR_DIR",
                   help="per-user calibration: unlabeled recordings of the one speaker in PATHS (≥ 5, 10+ better; "
                        "repeatable). Predictions then come from the speaker-normalised probe")
    args = p.parse_args(argv)

    # torch + the model load only when predicting: `--help` and argument errors answer at once
    from emotion_core.audio import AudioError
    from emotion_core.serving.predictor import Predictor

    try:
        predictor = Predictor.from_uri(args.model)
    except (LookupError, FileNotFoundError, ValueError) as exc:
        print(f"emotion-detect: {exc}", file=sys.stderr)
        return 2

    files = list(iter_audio_files(args.paths))
    if not files:
        print(f"emotion-detect: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {' '.join(args.paths)}", file=sys.stderr)
        return 2
    speaker = None
    if args.enroll:
        try:
            speaker = predictor.enroll(list(iter_audio_files(args.enroll)))
        except (ValueError, AudioError) as exc:
            print(f"emotion-detect: --enroll: {exc}", file=sys.stderr)
            return 2
        print(f"emotion-detect: speaker profile from {speaker.n_clips} recordings", file=sys.stderr)
    rows, failures = [], 0
    for path in files:
        try:
            pred = predictor.predict(path, speaker=speaker)
            rows.append({"path": str(path), **pred.model_dump(exclude={"status"})})
        except AudioError as exc:  # one bad file must not lose the others' results
            failures += 1
            rows.append({"path": str(path), "error": str(exc)})
            print(f"emotion-detect: {path}: {exc}", file=sys.stderr)

    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "emotion", "confidence", "music_mood", *EMOTIONS, "warning", "error"])
        for r in rows:
            probs = r.get("all_probabilities") or {}
            writer.writerow([r["path"], r.get("emotion", ""), _fmt(r.get("confidence")), r.get("music_mood", ""),
                             *(_fmt(probs.get(e)) for e in EMOTIONS), r.get("warning") or "", r.get("error", "")])
    else:
        for r in rows:
            if "error" in r:
                print(f"{r['path']}\tERROR\t{r['error']}")
            else:
                flag = "  (low confidence)" if r["warning"] else ""
                print(f"{r['path']}\t{r['emotion']}\t{r['confidence']:.2f}\t{r['music_mood']}{flag}")
    return 1 if failures else 0


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def run() -> None:
    """Console-script entry: exits quietly when the reader of a pipe goes away (`emotion-detect … | head`)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stderr.close()  # nothing left to report to
        code = 0
    raise SystemExit(code)


if __name__ == "__main__":
    run()
