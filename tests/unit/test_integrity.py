"""Model files are verified before they are loaded: `checksums.json` is written with every model directory,
and a changed, missing or unlisted file stops the load with the file named (emotion_core/integrity.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emotion_core.config import ModelConfig
from emotion_core.head.model import HybridEmotionCNN
from emotion_core.head.packaging import CONFIG_FILE, HEAD_FILE, ModelMeta, load_model_dir, save_model_dir
from emotion_core.head.speaker import SPEAKER_PROBE_FILE, SpeakerProbe
from emotion_core.integrity import CHECKSUMS_FILE, IntegrityError, sha256


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig()
    model = HybridEmotionCNN(7, 64, cfg).eval()
    meta = ModelMeta(encoder="whisper-base", encoder_fingerprint="f" * 64, num_layers=7, hidden_size=64,
                     head=cfg.model_dump(), temperature=1.3)
    rng = np.random.default_rng(0)
    probe = SpeakerProbe(rng.normal(size=8), np.ones(8), rng.normal(size=(8, 8)), np.zeros(8), 1.0)
    return save_model_dir(tmp_path / "model", model, meta, probe)


def test_checksums_are_written_and_verified(model_dir: Path) -> None:
    recorded = json.loads((model_dir / CHECKSUMS_FILE).read_text())["sha256"]
    assert recorded == {n: sha256(model_dir / n) for n in (CONFIG_FILE, HEAD_FILE, SPEAKER_PROBE_FILE)}
    model, meta = load_model_dir(model_dir)
    assert meta.verified is True and meta.temperature == 1.3
    assert "verified" not in json.loads((model_dir / CONFIG_FILE).read_text())  # a load-time fact, never saved


@pytest.mark.parametrize("name", [HEAD_FILE, CONFIG_FILE, SPEAKER_PROBE_FILE])
def test_a_changed_file_is_refused_by_name(model_dir: Path, name: str) -> None:
    path = model_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"{name} has sha256 .* recorded"):
        load_model_dir(model_dir)


def test_a_missing_or_unlisted_file_is_refused(model_dir: Path) -> None:
    (model_dir / SPEAKER_PROBE_FILE).unlink()
    with pytest.raises(IntegrityError, match=rf"{SPEAKER_PROBE_FILE} is missing"):
        load_model_dir(model_dir)
    record = json.loads((model_dir / CHECKSUMS_FILE).read_text())
    del record["sha256"][SPEAKER_PROBE_FILE]
    (model_dir / CHECKSUMS_FILE).write_text(json.dumps(record))
    load_model_dir(model_dir)  # consistent again: the probe is simply absent
    (model_dir / SPEAKER_PROBE_FILE).write_bytes(b"planted")
    with pytest.raises(IntegrityError, match="not listed"):
        load_model_dir(model_dir)
    (model_dir / CHECKSUMS_FILE).write_text("{not json")
    with pytest.raises(IntegrityError, match="damaged"):
        load_model_dir(model_dir)


def test_a_model_from_before_checksums_loads_unverified(model_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    (model_dir / CHECKSUMS_FILE).unlink()
    _, meta = load_model_dir(model_dir)
    assert meta.verified is False
    assert "NOT verified" in caplog.text
