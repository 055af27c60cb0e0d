"""A trained model on disk: the head's weights plus everything needed to rebuild the full predictor.

    <dir>/head.pt            state_dict of HybridEmotionCNN
    <dir>/model_config.json  encoder name + fingerprint, head config, labels, temperature, metrics
    <dir>/speaker_probe.npz  optional per-user calibration (emotion_core/head/speaker.py)
    <dir>/checksums.json     sha256 of the files above, verified before they are loaded (emotion_core/integrity.py)

The same directory is what MLflow stores (as the artifact of a pyfunc model) and what the predictor
and the BentoML service load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from emotion_core.config import ModelConfig
from emotion_core.head.model import HybridEmotionCNN
from emotion_core.head.speaker import SPEAKER_PROBE_FILE
from emotion_core.integrity import verify_checksums, write_checksums
from emotion_core.labels import EMOTIONS

HEAD_FILE = "head.pt"
CONFIG_FILE = "model_config.json"
MODEL_FILES = [HEAD_FILE, CONFIG_FILE, SPEAKER_PROBE_FILE]


@dataclass
class ModelMeta:
    encoder: str
    encoder_fingerprint: str
    num_layers: int
    hidden_size: int
    head: dict[str, Any]
    #: Logits are divided by this before the softmax (1.0 = uncalibrated).
    temperature: float = 1.0
    emotions: list[str] = field(default_factory=lambda: list(EMOTIONS))
    metrics: dict[str, float] = field(default_factory=dict)
    #: `front_end.FrontEnd` settings the head was trained behind (empty: none, as models before it).
    front_end: dict[str, Any] = field(default_factory=dict)
    #: Set at load (never saved): whether the files matched their recorded sha256 (False: none recorded).
    verified: bool | None = field(default=None, compare=False)


def save_model_dir(directory: Path, model: HybridEmotionCNN, meta: ModelMeta, speaker_probe: Any = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), directory / HEAD_FILE)
    saved = {k: v for k, v in asdict(meta).items() if k != "verified"}
    (directory / CONFIG_FILE).write_text(json.dumps(saved, indent=2))
    if speaker_probe is not None:
        speaker_probe.save(directory)
    write_checksums(directory, [n for n in MODEL_FILES if (directory / n).exists()])
    return directory


def find_model_dir(root: Path) -> Path:
    """The folder holding model_config.json under `root` (an MLflow pyfunc model nests it)."""
    if (root / CONFIG_FILE).exists():
        return root
    found = sorted(root.rglob(CONFIG_FILE))
    if not found:
        raise FileNotFoundError(f"no {CONFIG_FILE} under {root}: not an emotion model directory")
    return found[0].parent


def load_model_dir(directory: Path) -> tuple[HybridEmotionCNN, ModelMeta]:
    """The head and its meta; every file is checked against `checksums.json` first (IntegrityError naming a
    changed or missing file). `meta.verified` says whether the directory had checksums to check."""
    directory = find_model_dir(Path(directory))
    verified = verify_checksums(directory, MODEL_FILES)
    meta = ModelMeta(**json.loads((directory / CONFIG_FILE).read_text()))
    meta.verified = verified
    if tuple(meta.emotions) != EMOTIONS:
        raise ValueError(f"model {directory} was trained with labels {meta.emotions}, expected {list(EMOTIONS)}")
    model = HybridEmotionCNN(meta.num_layers, meta.hidden_size, ModelConfig(**meta.head))
    model.load_state_dict(torch.load(directory / HEAD_FILE, map_location="cpu", weights_only=True))
    return model.eval(), meta
