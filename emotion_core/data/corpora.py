"""The corpora the project can train and evaluate on, as data: where each lives, which of the 8 labels it
has, and how it is read. Code asks `CORPORA[name]`, never `if corpus == ...`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from emotion_core.config import data_dir
from emotion_core.data.ravdess import read_ravdess
from emotion_core.data.tess import read_tess
from emotion_core.data.turev import CODES as TUREV_CODES
from emotion_core.data.turev import read_turev
from emotion_core.labels import EMOTION_TO_INDEX, EMOTIONS, NUM_EMOTIONS


@dataclass(frozen=True)
class Corpus:
    name: str
    #: The labels it has, in EMOTIONS order: UA is averaged over these, and a clip's loss is masked to them.
    classes: tuple[str, ...]
    language: str
    speakers: int
    what: str
    reader: Callable[[Path], pd.DataFrame]

    def read(self, root: str | Path | None = None) -> pd.DataFrame:
        """Its manifest, from `root` or `$EMOTION_DATA_DIR/<name>`."""
        return self.reader(Path(root) if root else data_dir() / self.name)


def _ordered(labels: Iterable[str]) -> tuple[str, ...]:
    wanted = set(labels)
    assert wanted <= set(EMOTIONS), wanted
    return tuple(e for e in EMOTIONS if e in wanted)


CORPORA: dict[str, Corpus] = {
    "ravdess": Corpus("ravdess", EMOTIONS, "English", 24, "acted, 2 sentences, studio", read_ravdess),
    "tess": Corpus("tess", _ordered(set(EMOTIONS) - {"calm"}), "English", 2, "acted single words, studio",
                   read_tess),
    "turev": Corpus("turev", _ordered(TUREV_CODES.values()), "Turkish", 6, "acted single words", read_turev),
}


def class_mask(corpora: Iterable[str]) -> np.ndarray:
    """[n, 8] bool: the labels each clip's corpus can have (a corpus not listed here, e.g. an HF dataset: all 8)."""
    rows = {name: np.isin(np.arange(NUM_EMOTIONS), [EMOTION_TO_INDEX[e] for e in c.classes])
            for name, c in CORPORA.items()}
    everything = np.ones(NUM_EMOTIONS, bool)
    return np.array([rows.get(name, everything) for name in corpora], dtype=bool).reshape(-1, NUM_EMOTIONS)
