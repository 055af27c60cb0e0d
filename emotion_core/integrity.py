"""sha256 of model files: recorded when a model directory is written (`checksums.json` beside the files, part
of the artifact MLflow registers), verified before anything is loaded. A damaged, swapped or missing file
stops the load with the file named; it is never served."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

CHECKSUMS_FILE = "checksums.json"

log = logging.getLogger(__name__)


class IntegrityError(RuntimeError):
    """A model file differs from its recorded sha256, or is missing."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path, names: list[str]) -> Path:
    """Record the sha256 of `names` (files in `directory`) in `directory/checksums.json`."""
    path = Path(directory) / CHECKSUMS_FILE
    path.write_text(json.dumps({"sha256": {n: sha256(Path(directory) / n) for n in sorted(names)}}, indent=2))
    return path


def verify_checksums(directory: Path, names: list[str]) -> bool:
    """Check every file `checksums.json` lists, and that each of `names` present in `directory` is listed.
    True when verified; False (with a warning) for a directory written before checksums were recorded.
    Raises IntegrityError naming the file otherwise."""
    directory = Path(directory)
    record = directory / CHECKSUMS_FILE
    if not record.is_file():
        log.warning("%s has no %s (a model written before checksums were recorded): its files are NOT verified;"
                    " retrain and register it to get them", directory, CHECKSUMS_FILE)
        return False
    try:
        expected: dict[str, str] = json.loads(record.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{record} is damaged ({exc}): the model cannot be verified") from None
    for name in names:
        if (directory / name).exists() and name not in expected:
            raise IntegrityError(f"{directory / name} is not listed in {record}: refusing an unverified file")
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing (listed in {record})")
        if (actual := sha256(path)) != digest:
            raise IntegrityError(f"{path} has sha256 {actual[:16]}…, but {record} recorded {digest[:16]}…: "
                                 "the file was changed or damaged")
    return True
