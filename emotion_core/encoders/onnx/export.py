"""Build time: Whisper-base's encoder exported to ONNX once per machine (and quantised to int8), cached.

    torch WhisperEncoder (whisper.py) ──export──► ONNX fp32, dynamic time axis ──quantise──► ONNX int8
                                                  (cached once per weights fingerprint)

* **Export.** `whisper_hidden_states` itself is exported (torch.export → ONNX), so the graph slices the
  positional table to the clip's own frame count: one graph serves 0.3 s to 30 s, and nothing is padded
  to Whisper's 30 s. It returns the first `num_layers` hidden states [L, frames, 512] and, with fewer than
  7, never computes the layers above (`num_layers=4` runs 3 of the 6 transformer layers).
* **int8.** Dynamic quantisation of the 36 linears (weights per output channel, activations quantised
  per call to u8; the convolutions and attention products stay fp32), except `FP32_LINEARS`: layer 3's
  fc2 carries Whisper's outlier activations and, quantised, caused most of the error that reaches the
  head (a per-layer sensitivity sweep). Which weight type runs fastest depends on the CPU, so every
  machine builds the `INT8_VARIANTS` and `runtime.tune_int8` serves the fastest one that stays close to
  fp32: u8×s8 is the native VNNI/AMX kernel, and without VNNI its pair sums saturate unless the
  weights keep to 7 bits (`reduce_range`); u8×u8 never saturates.
* **Cache.** `cache_dir()/encoders/whisper-base-<fingerprint>-onnx<EXPORT_VERSION>/`, one file per
  (num_layers, precision[, variant]), written atomically like the Whisper conversion, with a JSON sidecar
  (sha256, versions, and for the served int8 file the machine it was chosen on). `runtime.py` only loads
  these files.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
import warnings
from pathlib import Path

import torch

from emotion_core import config as project_config
from emotion_core import features
from emotion_core.encoders import whisper
from emotion_core.integrity import sha256

log = logging.getLogger(__name__)

#: Bump when the export or quantisation changes: new files, never stale ones.
EXPORT_VERSION = 2
PRECISIONS = ("int8", "fp32")
#: int8 variants: (ONNX Runtime weight type, 7-bit weights). Activations are u8 in all of them.
INT8_VARIANTS: dict[str, tuple[str, bool]] = {"u8u8": ("QUInt8", False), "u8s8": ("QInt8", False),
                                              "u8s8r": ("QInt8", True)}
#: The variant earlier releases served and validated everywhere: the reference the others are held to.
REFERENCE_VARIANT = "u8u8"
META_VARIANT = "emotion.int8_variant"
#: The ISA flags that decide which int8 kernels MLAS runs.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
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


def model_filename(num_layers: int = TOTAL_STATES, precision: str = "int8", variant: str | None = None) -> str:
    """The served file is `...-int8.onnx` (the variant chosen for this machine); candidates carry their variant."""
    return f"{whisper.NAME}-L{num_layers}-{precision}{f'-{variant}' if variant else ''}.onnx"


@functools.cache  # the CPU does not change under a running process
def machine_identity() -> dict[str, object]:
    """The CPU model, its int8-relevant ISA flags and the ONNX Runtime version: what an int8 choice depends on."""
    cpu, flags = "", set()
    with contextlib.suppress(OSError):  # Linux; elsewhere the platform's own name and no flags
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"cpu": cpu or platform.processor() or "unknown", "isa": [f for f in ISA_FLAGS if f in flags],
            "onnxruntime": _versions()["onnxruntime"]}


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


def _stamp(model, fingerprint: str, num_layers: int, precision: str, variant: str | None = None) -> None:
    """Identity inside the file, so a copy (e.g. from the registry) can be checked before use."""
    import onnx  # build time only: serving never imports onnx

    del model.metadata_props[:]
    props = {META_FINGERPRINT: fingerprint, "emotion.num_layers": str(num_layers), "emotion.precision": precision,
             "emotion.export_version": str(EXPORT_VERSION), **({META_VARIANT: variant} if variant else {})}
    for key, value in props.items():
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


def quantize_int8(source: Path, target: Path, variant: str = REFERENCE_VARIANT,
                  fp32_linears: tuple[str, ...] = FP32_LINEARS) -> Path:
    """Dynamic int8 quantisation of the linears (weights per output channel, of the variant's type), except
    `fp32_linears`."""
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
            weight_type, reduce_range = INT8_VARIANTS[variant]
            quantize_dynamic(str(source), str(tmp), weight_type=getattr(QuantType, weight_type), per_channel=True,
                             reduce_range=reduce_range, op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
        quantized = onnx.load(str(tmp))
        fingerprint = next(p.value for p in model.metadata_props if p.key == META_FINGERPRINT)
        _stamp(quantized, fingerprint, num_layers, "int8", variant)
        onnx.save(quantized, tmp)
        _publish(tmp, target, {"fingerprint": fingerprint, "num_layers": num_layers, "precision": "int8",
                               "export_version": EXPORT_VERSION, "fp32_linears": sorted(present),
                               "variant": variant, "weights": f"{weight_type}, per channel"
                               + (", 7-bit" if reduce_range else ""), "seconds": round(time.perf_counter() - started, 1),
                               "source": source.name, **_versions()})
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantised %s in %.1f s", target, time.perf_counter() - started)
    return target


def publish_copy(source: Path, target: Path, meta: dict) -> Path:
    """`source` copied to `target` atomically, with `meta` merged into its sidecar (the served int8 file)."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copyfile(source, tmp)
        _publish(tmp, target, {**(read_sidecar(source) or {}), **meta})
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_sidecar(path: Path) -> dict | None:
    sidecar = path.with_suffix(".json")
    return json.loads(sidecar.read_text()) if path.is_file() and sidecar.is_file() else None
