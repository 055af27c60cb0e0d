"""Whisper-base's encoder on ONNX Runtime: the serving path (`load_encoder("whisper-base")` by default).

It loads the file `export.py` built (or, with `EMOTION_ONNX_DIR` / `onnx_dir=`, a folder of files exported
elsewhere, e.g. the ones `pipelines/export.py` logged with the registered model; a file is used only if the
weights fingerprint stored inside it matches). Every start after the first export only loads it: no torch
weights, no transformers import.

* **Session.** One `InferenceSession` per encoder, created once: intra-op threads = usable cores (≤ 4,
  `EMOTION_ONNX_THREADS` overrides), one inter-op thread, sequential execution, all graph optimisations,
  no spin-waiting between ops (`EMOTION_ONNX_SPIN=1` turns it on), no memory arena, and a warm-up run at
  construction so the first request pays no first-run allocation. A `Predictor` serving with it sets torch
  to one intra-op thread (`use_serving_torch_threads`, `EMOTION_TORCH_THREADS`, 0 = leave): torch then only
  computes the log-mel and the head, and its thread pool would otherwise contend with ORT's.

The fingerprint is the *weights'* fingerprint (the same as the torch encoder's), so heads trained on the
fp32 torch features load unchanged; `runtime` ("onnx-int8" / "onnx-fp32") says what computes them. The
embedding cache stays fp32-torch-derived: `EmbeddingCache.build` refuses another runtime.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from emotion_core import features
from emotion_core.encoders import whisper
from emotion_core.encoders.base import SpeechEncoder
from emotion_core.encoders.onnx import export
from emotion_core.encoders.onnx.export import (
    INPUT_NAME,
    INT8_VARIANTS,
    MAX_MEL_FRAMES,
    META_FINGERPRINT,
    OUTPUT_NAME,
    PRECISIONS,
    REFERENCE_VARIANT,
    TOTAL_STATES,
    model_filename,
)
from emotion_core.heap import release_freed_heap
from emotion_core.integrity import IntegrityError, sha256

log = logging.getLogger(__name__)


def use_serving_torch_threads() -> None:
    """For a process that serves with this encoder (the `Predictor`): beside it torch only computes the
    log-mel and the head, and with its default pool (one thread per core) its OpenMP threads contend with
    ORT's, which on a busy machine costs more than the whole head. $EMOTION_TORCH_THREADS
    overrides (default 1; 0 leaves torch as it is). Not done by the encoder itself: a process that also
    trains (crossval's int8 check) keeps its own setting."""
    torch_threads = int(os.environ.get("EMOTION_TORCH_THREADS", "1"))
    if torch_threads > 0 and torch.get_num_threads() != torch_threads:
        log.info("torch intra-op threads %d → %d (the encoder runs in ONNX Runtime)", torch.get_num_threads(), torch_threads)
        torch.set_num_threads(torch_threads)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    if env := os.environ.get("EMOTION_ONNX_THREADS"):
        return max(1, int(env))
    return max(1, min(4, usable_cores()))


#: A candidate int8 variant is served only if its encoder output is at most this many times further from
#: fp32 than the reference variant's (a saturating kernel is several times further).
MAX_ERROR_RATIO = 1.5
#: Variants whose p50 lies within this fraction of the fastest one's are a tie (timing noise on a 15-run
#: probe is about this size): the tie goes to the one closest to fp32.
SPEED_TIE = 0.05
TUNING_REPS = 15
#: Bump when `choose_variant`'s rule changes: every machine then chooses again on its next load.
CHOICE_RULE = 2
#: What `tune_int8` adds to the served file's sidecar: this machine's choice, whichever variant serves.
CHOICE_KEYS = ("variant", "machine", "candidates", "fp32_ms_p50", "max_error_ratio", "chosen_by", "threads",
               "choice_rule")


def exported_model(num_layers: int = TOTAL_STATES, precision: str = "int8", cache_root: Path | None = None) -> Path:
    """The cached ONNX file this machine serves for (num_layers, precision): exported on first use, and for
    int8 the variant `tune_int8` chose on this CPU (chosen again when the CPU or ONNX Runtime changed)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not 1 <= num_layers <= TOTAL_STATES:
        raise ValueError(f"num_layers must be 1..{TOTAL_STATES}, got {num_layers}")
    folder = export.onnx_cache_dir(cache_root)
    fp32 = folder / model_filename(num_layers, "fp32")
    if not fp32.is_file():
        export.export_fp32(fp32, num_layers, cache_root)
    if precision == "fp32":
        return fp32
    served = folder / model_filename(num_layers, "int8")
    chosen = export.read_sidecar(served)
    if num_layers < TOTAL_STATES:
        # One choice per machine, the full encoder's: an early-stopped encoder quantised the same way gives
        # exactly the full one's first states (timing each depth apart could pick different layouts).
        full = export.read_sidecar(exported_model(TOTAL_STATES, "int8", cache_root)) or {}
        if chosen is None or (chosen.get("variant"), chosen.get("machine")) != (full.get("variant"), full.get("machine")):
            source = served.with_name(model_filename(num_layers, "int8", full["variant"]))
            if not source.is_file():
                export.quantize_int8(fp32, source, full["variant"])
            export.publish_copy(source, served, {"variant": full["variant"], "machine": full["machine"],
                                                 "chosen_by": f"the {TOTAL_STATES}-state file's choice"})
        return served
    if chosen is None or chosen.get("machine") != export.machine_identity() or chosen.get("choice_rule") != CHOICE_RULE:
        tune_int8(fp32, served, num_layers)
    return served


def probe_log_mel(seconds: float = 3.0) -> torch.Tensor:
    """A deterministic voice-like signal's log-mel (a gliding harmonic tone in syllable-length bursts, a little
    noise): what the int8 variants are timed and compared on, without any corpus."""
    t = np.arange(int(seconds * features.SAMPLE_RATE)) / features.SAMPLE_RATE
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / features.SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    noise = np.random.default_rng(0).standard_normal(len(t)) * 0.01
    return features.log_mel((0.1 * voice + noise).astype(np.float32))


def tune_int8(fp32: Path, served: Path, num_layers: int, variants: tuple[str, ...] | None = None,
              threads: int | None = None, reps: int = TUNING_REPS) -> dict:
    """Build each int8 variant (once per weights fingerprint), time it on this CPU with the serving session
    options (interleaved, p50 of `reps` runs of a 3 s clip), measure how far its top hidden state lies from
    fp32's, and serve the one `choose_variant` picks (the fastest that stays close to fp32; ties to the
    closest). The choice, the candidates' figures and the machine are written into the served file's sidecar."""
    import onnxruntime as ort  # optional: ImportError → load_encoder falls back to torch

    variants = tuple(variants or INT8_VARIANTS)
    if REFERENCE_VARIANT not in variants:
        variants = (REFERENCE_VARIANT, *variants)
    files = {}
    for variant in variants:
        files[variant] = served.with_name(model_filename(num_layers, "int8", variant))
        if not files[variant].is_file():
            export.quantize_int8(fp32, files[variant], variant)
    mel = np.ascontiguousarray(probe_log_mel().numpy(), dtype=np.float32)[None]
    sessions = {name: ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
                for name, path in {"fp32": fp32, **files}.items()}
    outputs = {name: s.run([OUTPUT_NAME], {INPUT_NAME: mel})[0][-1] for name, s in sessions.items()}  # warm-up too
    times: dict[str, list[float]] = {name: [] for name in sessions}  # fp32 too: the speed-up the choice buys
    names = list(sessions)
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            started = time.perf_counter()
            sessions[name].run([OUTPUT_NAME], {INPUT_NAME: mel})
            times[name].append(time.perf_counter() - started)
    del sessions
    reference = outputs["fp32"]
    scale = float(np.sqrt(np.mean(reference**2)))
    candidates = {name: {"ms_p50": round(1000 * float(np.median(times[name])), 2),
                         "relative_error": round(float(np.sqrt(np.mean((outputs[name] - reference) ** 2))) / scale, 4)}
                  for name in files}
    chosen = choose_variant(candidates)
    fp32_ms = round(1000 * float(np.median(times["fp32"])), 2)
    choice = {"variant": chosen, "machine": export.machine_identity(), "candidates": candidates,
              "fp32_ms_p50": fp32_ms, "max_error_ratio": MAX_ERROR_RATIO, "chosen_by": "speed",
              "choice_rule": CHOICE_RULE,
              "threads": threads or default_threads()}
    export.publish_copy(files[chosen], served, choice)
    log.info("int8 variant %s chosen on %s: %s", chosen, choice["machine"]["cpu"], candidates)
    return choice


def choose_variant(candidates: dict[str, dict[str, float]]) -> str:
    """The variant to serve from `tune_int8`'s figures: among those whose error is within MAX_ERROR_RATIO of
    the reference variant's, the fastest — and of those within SPEED_TIE of it, the one closest to fp32."""
    limit = MAX_ERROR_RATIO * candidates[REFERENCE_VARIANT]["relative_error"]
    eligible = {name: c for name, c in candidates.items() if c["relative_error"] <= limit}
    fastest = min(c["ms_p50"] for c in eligible.values())
    tied = [name for name, c in eligible.items() if c["ms_p50"] <= fastest * (1 + SPEED_TIE)]
    return min(tied, key=lambda name: (eligible[name]["relative_error"], eligible[name]["ms_p50"]))


def session_options(threads: int | None = None, spinning: bool | None = None):
    import onnxruntime as ort  # optional: ImportError → load_encoder falls back to torch

    if spinning is None:
        spinning = os.environ.get("EMOTION_ONNX_SPIN", "0") == "1"

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads shave a little latency on an idle machine but fight every other process for
    # the cores (slower on a shared box). Off by default; EMOTION_ONNX_SPIN=1 turns it on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only
    # No arena: it would keep the largest activations ever seen (a 30 s clip's) for the process's life;
    # plain malloc/free measured as fast, and lighter.
    options.enable_cpu_mem_arena = False
    return options


class OnnxWhisperEncoder(SpeechEncoder):
    """Whisper-base on ONNX Runtime (int8 by default): same interface, shapes and fingerprint as
    `WhisperBaseEncoder`; `runtime` is "onnx-int8" or "onnx-fp32" and `session` the InferenceSession."""

    name = whisper.NAME
    hidden_size = whisper.HIDDEN_SIZE
    frame_rate = 50.0
    max_seconds = 30.0

    def __init__(self, num_layers: int | None = None, precision: str = "int8", cache_root: Path | None = None,
                 onnx_dir: str | Path | None = None, threads: int | None = None, warmup: bool = True):
        import onnxruntime as ort  # ImportError → load_encoder falls back to torch

        self.num_layers = num_layers or TOTAL_STATES
        self.precision = precision
        self.runtime = f"onnx-{precision}"
        self.fingerprint = whisper.fingerprint()
        onnx_dir = onnx_dir or os.environ.get("EMOTION_ONNX_DIR") or None
        shipped = Path(onnx_dir) / model_filename(self.num_layers, precision) if onnx_dir else None
        self.model_path = shipped if shipped and shipped.is_file() else exported_model(self.num_layers, precision, cache_root)
        self.build = export.read_sidecar(self.model_path)
        if self.build and self.build.get("sha256") and sha256(self.model_path) != self.build["sha256"]:
            raise IntegrityError(f"{self.model_path} differs from the sha256 its sidecar recorded at export: delete "
                                 f"it and its .json (`make export` rebuilds them)")
        self.threads = threads or default_threads()
        self.session = ort.InferenceSession(str(self.model_path), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        stored = self.session.get_modelmeta().custom_metadata_map
        if stored.get(META_FINGERPRINT) != self.fingerprint or stored.get("emotion.num_layers") != str(self.num_layers):
            raise RuntimeError(f"{self.model_path} was exported from weights {stored.get(META_FINGERPRINT)} with "
                               f"{stored.get('emotion.num_layers')} states; expected {self.fingerprint} with {self.num_layers}")
        #: The int8 variant in the file (None for fp32) and how it was chosen (its sidecar; None for a shipped file
        #: that came without one).
        self.variant = stored.get(export.META_VARIANT)
        self._max_mel_frames = MAX_MEL_FRAMES
        if warmup:  # first-run allocations and kernel selection happen here, not in the first request
            self.encode(np.zeros(3 * features.SAMPLE_RATE, np.float32) + 1e-3)
        release_freed_heap()  # the parsed model protobuf, the warm-up's buffers

    def describe(self) -> dict:
        """What runs: runtime, int8 variant, threads, and the machine the variant was chosen on."""
        machine = (self.build or {}).get("machine") or {}
        return {"runtime": self.runtime, "int8_variant": self.variant, "threads": self.threads,
                "chosen_on": machine.get("cpu"), "chosen_by": (self.build or {}).get("chosen_by")}

    def encode(self, audio: np.ndarray, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        log_mel = whisper.checked_log_mel(audio, log_mel, self.name, self.max_seconds, self._max_mel_frames)
        mel = np.ascontiguousarray(log_mel.detach().numpy(), dtype=np.float32)[None]
        if mel.shape[2] < 2:  # the graph's smallest time axis; one mel frame is padded like a 2-frame clip
            mel = np.pad(mel, ((0, 0), (0, 0), (0, 2 - mel.shape[2])))
        hidden = self.session.run([OUTPUT_NAME], {INPUT_NAME: mel})[0]
        return torch.from_numpy(hidden)
