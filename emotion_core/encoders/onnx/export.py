"""Build time: Whisper-base's encoder exported to ONNX once per machine (and quantised to int8), cached.

    torch WhisperEncoder (whisper.py) ──export──► ONNX fp32, dynamic time axis ──quantise──► ONNX int8
                                                  (cached once per weights fingerprint)

* **Export.** `whisper_hidden_states` itself is exported (torch.export → ONNX), so the graph slices the
  positional table to the clip's own frame count: one graph serves 0.3 s to 30 s, and nothing is padded
  to Whisper's 30 s. It returns the first `num_layers` hidden states [L, frames, 512] and, with fewer than
  7, never computes the layers above (`num_layers=4` runs 3 of the 6 transformer layers).
* **int8.** Dynamic quantisation of the 36 linears (weights QUInt8 per output channel, activations
  quantised per call; the convolutions and attention products stay fp32), except `FP32_LINEARS`:
  layer 3's fc2 carries Whisper's outlier activations and, quantised, caused most of the error that
  reaches the head (a per-layer sensitivity sweep). QUInt8 weights because QInt8 ones (u8s8) can
  saturate in the AVX2 kernels without VNNI.
* **Cache.** `cache_dir()/encoders/whisper-base-<fingerprint>-onnx<EXPORT_VERSION>/`, one file per
  (num_layers, precision), written atomically like the Whisper conversion, with a JSON sidecar (sha256,
  versions). `runtime.py` only loads these files.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import time
import uuid
import warnings
from pathlib import Path

import torch

from emotion_core import config as project_config
from emotion_core import features
from emotion_core.encoders import whisper

log = logging.getLogger(__name__)

#: Bump when the export or quantisation changes: new files, never stale ones.
EXPORT_VERSION = 1
PRECISIONS = ("int8", "fp32")
#: Linears left in fp32 in the int8 model (module names inside the WhisperEncoder); see the docstring.
FP32_LINEARS: tuple[str, ...] = ("layers.3.fc2",)
TOTAL_STATES = whisper.NUM_STATES
INPUT_NAME, OUTPUT_NAME = "log_mel", "hidden_states"
MAX_MEL_FRAMES = 3000
META_FINGERPRINT = "emotion.encoder_fingerprint"

#: How many exports this process ran (tests use it to prove the cache is reused).
export_count = 0


def onnx_cache_dir(cache_root: Path | None = None) -> Path:
    return Path(cache_root or project_config.cache_dir()) / "encoders" / f"{whisper.NAME}-{whisper.fingerprint()}-onnx{EXPORT_VERSION}"


def model_filename(num_layers: int = TOTAL_STATES, precision: str = "int8") -> str:
    return f"{whisper.NAME}-L{num_layers}-{precision}.onnx"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


class _HiddenStates(torch.nn.Module):
    """What gets exported: log-mel [1, 80, T] → the first `num_states` hidden states [L, ceil(T/2), 512]."""

    def __init__(self, encoder: torch.nn.Module, num_states: int):
        super().__init__()
        self.encoder, self.num_states = encoder, num_states

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return whisper.whisper_hidden_states(self.encoder, log_mel, self.num_states)[:, 0]


def _publish(tmp: Path, target: Path, meta: dict) -> None:
    """fsync, then rename into place (atomic: readers see no file or a whole one), sidecar JSON after."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    meta = {**meta, "sha256": sha256(tmp), "bytes": tmp.stat().st_size}
    os.replace(tmp, target)
    sidecar = target.with_suffix(".json")
    tmp_json = sidecar.with_name(f"{sidecar.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    tmp_json.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_json, sidecar)


def _stamp(model, fingerprint: str, num_layers: int, precision: str) -> None:
    """Identity inside the file, so a copy (e.g. from the registry) can be checked before use."""
    import onnx  # build time only: serving never imports onnx

    del model.metadata_props[:]
    for key, value in {META_FINGERPRINT: fingerprint, "emotion.num_layers": str(num_layers),
                       "emotion.precision": precision, "emotion.export_version": str(EXPORT_VERSION)}.items():
        onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})


@contextlib.contextmanager
def _quiet():
    """The exporter and quantiser print progress and advice (stdout, INFO logs, FutureWarnings): hide them."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_fp32(target: Path, num_layers: int = TOTAL_STATES, cache_root: Path | None = None) -> Path:
    """torch → ONNX (fp32) with a dynamic time axis. Needs torch, onnx and onnxscript (the torch.export-based
    exporter); takes ~10 s."""
    global export_count
    import onnx  # build time only: serving never imports onnx

    started = time.perf_counter()
    reference = whisper.WhisperBaseEncoder(cache_root=cache_root)
    module = _HiddenStates(reference.model, num_layers).eval()
    example = torch.zeros(1, features.N_MELS, 300)
    frames = torch.export.Dim("mel_frames", min=2, max=MAX_MEL_FRAMES)
    with torch.inference_mode(False), _quiet():
        program = torch.onnx.export(
            module, (example,), dynamo=True, dynamic_shapes={"log_mel": {2: frames}},
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], optimize=True, verbose=False,
        )
    model = program.model_proto
    _stamp(model, reference.fingerprint, num_layers, "fp32")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        onnx.save(model, tmp)  # one file: 82 MB is far below protobuf's 2 GB limit
        _publish(tmp, target, {"fingerprint": reference.fingerprint, "num_layers": num_layers, "precision": "fp32",
                               "export_version": EXPORT_VERSION, "seconds": round(time.perf_counter() - started, 1),
                               **_versions()})
    finally:
        tmp.unlink(missing_ok=True)
    export_count += 1
    log.info("exported %s in %.1f s", target, time.perf_counter() - started)
    return target


def linear_nodes(model) -> dict[str, str]:
    """MatMul node name → WhisperEncoder linear module ("layers.3.fc2"), read from the exporter's
    per-node `namespace` metadata."""
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        hits = re.findall(r"(layers\.\d+\.[\w.]+): torch\.nn\.modules\.linear\.Linear", namespace)
        if hits:
            found[node.name] = hits[-1]
    return found


def quantize_int8(source: Path, target: Path, fp32_linears: tuple[str, ...] = FP32_LINEARS) -> Path:
    """Dynamic int8 quantisation of the linears (QUInt8 weights per output channel), except `fp32_linears`."""
    import onnx  # build time only: serving never imports onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # build time only (pulls onnx and sympy)

    started = time.perf_counter()
    model = onnx.load(str(source), load_external_data=False)
    nodes = linear_nodes(model)
    num_layers = int(next(p.value for p in model.metadata_props if p.key == "emotion.num_layers"))
    present = {m for m in fp32_linears if int(m.split(".")[1]) < num_layers - 1}
    exclude = [name for name, module in nodes.items() if module in present]
    if len(nodes) != 6 * (num_layers - 1) or len(exclude) != len(present):
        raise RuntimeError(f"{source}: found {len(nodes)} linears and {len(exclude)} of {sorted(present)} to keep in "
                           "fp32; the exporter's node metadata changed — update linear_nodes()")
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with _quiet():
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QUInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
        quantized = onnx.load(str(tmp))
        fingerprint = next(p.value for p in model.metadata_props if p.key == META_FINGERPRINT)
        _stamp(quantized, fingerprint, num_layers, "int8")
        onnx.save(quantized, tmp)
        _publish(tmp, target, {"fingerprint": fingerprint, "num_layers": num_layers, "precision": "int8",
                               "export_version": EXPORT_VERSION, "fp32_linears": sorted(present),
                               "weights": "QUInt8, per channel", "seconds": round(time.perf_counter() - started, 1),
                               "source": source.name, **_versions()})
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantised %s in %.1f s", target, time.perf_counter() - started)
    return target


def exported_model(num_layers: int = TOTAL_STATES, precision: str = "int8", cache_root: Path | None = None) -> Path:
    """The cached ONNX file for (num_layers, precision), exporting (and quantising) first if needed."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 1 <= num_layers <= TOTAL_STATES:
        raise ValueError(f"num_layers must be 1..{TOTAL_STATES}, got {num_layers}")
    folder = onnx_cache_dir(cache_root)
    fp32 = folder / model_filename(num_layers, "fp32")
    if not fp32.is_file():
        export_fp32(fp32, num_layers, cache_root)
    if precision == "fp32":
        return fp32
    int8 = folder / model_filename(num_layers, "int8")
    if not int8.is_file():
        quantize_int8(fp32, int8)
    return int8
