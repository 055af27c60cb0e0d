"""Inference speed, memory and agreement, measured in ONE run on the same clips (`make bench`):

  (a) baseline, "the Hugging Face way": transformers' WhisperFeatureExtractor (pads every clip to 30 s)
      + the fp32 WhisperEncoder's own forward over all 1500 positions (our converted weights) + our head;
  (b) our torch fp32 path: `Predictor` with EMOTION_RUNTIME=torch (the clip's own length);
  (c) the optimised path: `Predictor` with the default runtime, ONNX Runtime int8 (encoders/onnx/runtime.py);
  (c') the same ONNX graph in fp32, in-process only, to separate export gains from quantisation.

    python -m pipelines.benchmark            # full: ~15-25 min on 2 cores; writes reports/benchmark.{json,md}
    python -m pipelines.benchmark --quick    # smaller samples everywhere (~5 min)

Sections: in-process latency of 1 s / 3 s / 10 s clips (p50/p95; the variants are interleaved round by
round so a busy machine slows them alike), the same over HTTP against two real `bentoml serve` processes
(torch and onnx) run side by side, serving RSS over 1000 requests, throughput with 1 and 2 workers, `emotion-detect` throughput on a folder,
top-1 agreement and max probability difference of (c) vs (b) on all 1440 RAVDESS clips, encoder-only time
per number of layers, a 3 s prediction's stages and the ONNX Runtime session options (bench/profile.py),
embedding time of the corpus with the optimised encoder (scratch cache), and peak RSS of training one
fold. Each process keeps its serving thread settings: torch at one thread per core for (a)/(b); ORT at
`default_threads()` with torch at one thread for (c) (what loading the ONNX encoder sets).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow

from bench.baseline import HFWay
from bench.common import CORES, log, machine, make_clips, torch_threads
from bench.http import http_benchmark, throughput_by_workers
from bench.latency import encoder_only, interleaved
from bench.profile import predictor_stages, session_options_sweep
from bench.report import bars, layer_probe_rows, write_reports
from bench.resources import cli_throughput, cpu_snapshot, embedding_time, training_peak_rss
from bench.server import Server, server_env, wait_all_ready
from emotion_core.config import REPORTS_DIR, model_uri, tracking_uri
from emotion_core.serving.release import compare, model_version, predictor_for, ravdess_paths


def pin_model() -> str:
    """models:/name@alias → models:/name/<version> in $EMOTION_MODEL_URI for this run and its subprocesses, so
    every section measures the same model even if the alias moves meanwhile."""
    uri = model_uri()
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    version = model_version(uri) if "@" in uri else None
    pinned = f"models:/{version.name}/{version.version}" if version else uri
    os.environ["EMOTION_MODEL_URI"] = pinned
    return pinned


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller samples everywhere (a few minutes)")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--agreement-clips", type=int, default=None, help="default: 1440 (quick: 120)")
    p.add_argument("--out", type=Path, default=REPORTS_DIR)
    p.add_argument("--no-readme", action="store_true", help="don't rewrite the README's generated benchmark section")
    p.add_argument("--render", action="store_true", help="only rewrite benchmark.md and the README from benchmark.json")
    p.add_argument("--resume", action="store_true",
                   help="keep the sections reports/benchmark.partial.json already holds (same model) and run the rest")
    args = p.parse_args(argv)
    # SIGTERM → SystemExit, so the `finally` blocks still stop the servers and remove the scratch folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.render:
        saved = json.loads((args.out / "benchmark.json").read_text())
        saved["bars"] = bars(saved)
        return write_reports(saved, args.out, readme=not args.no_readme, stem="benchmark")
    q = args.quick
    n = {"a": 3 if q else 10, "bc": 10 if q else 40, "http": 8 if q else 30, "rss": 200 if q else 1000,
         "cli": 30 if q else 200, "agree": args.agreement_clips or (120 if q else 1440), "embed": 120 if q else 1440,
         "enc": 10 if q else 30}
    started, cpu_start = time.perf_counter(), cpu_snapshot()
    result: dict[str, Any] = {"quick": q, "machine": machine(), "samples": n, "model_uri": pin_model()}
    partial = args.out / "benchmark.partial.json"
    if args.resume and partial.exists():
        saved = json.loads(partial.read_text())
        if saved.get("model_uri") == result["model_uri"] and saved.get("quick") == q:
            resumed = [k for k in ("in_process", "encoder_only", "agreement", "http", "workers", "cli", "embedding") if k in saved]
            result = {**saved, "resumed": {"sections": resumed, "machine_at_resume": result["machine"]}}
            log(f"resuming: keeping {resumed} from {partial}")
    log(f"machine: {result['machine']}")
    workdir = Path(tempfile.mkdtemp(prefix="emotion-bench-"))
    args.out.mkdir(parents=True, exist_ok=True)

    def checkpoint() -> None:  # what is measured so far survives a crash (benchmark.partial.json)
        done = [k for k in ("in_process", "agreement", "http", "workers", "cli", "embedding") if k in result]
        loads = result.setdefault("load_average_after", {})
        for key in done:  # the 1-minute load when each section ended: how busy the machine was for it
            loads.setdefault(key, round(os.getloadavg()[0], 2))
        (args.out / "benchmark.partial.json").write_text(json.dumps(result, indent=2, default=str))

    try:
        clips = make_clips(workdir, per_length=3 if q else 5)

        if "agreement" not in result:
            log("loading predictors (torch fp32, onnx int8, onnx fp32) and the HF-way baseline")
            b = predictor_for("torch")
            c = predictor_for("onnx")
            c2 = predictor_for("onnx-fp32")
            a = HFWay(b)
            result["int8"] = {**(c.encoder.build or {}), **c.encoder.describe()}
            log(f"in-process latency: (a) {n['a']}×, (b)/(c)/(c') {n['bc']}× per length")
            result["in_process"] = interleaved(
                {"a_hf_way": (a.predict, CORES), "b_torch_fp32": (b.predict, CORES),
                 "c_onnx_int8": (c.predict, 1), "c_onnx_fp32": (c2.predict, 1)},
                clips, {"a_hf_way": n["a"], "b_torch_fp32": n["bc"], "c_onnx_int8": n["bc"], "c_onnx_fp32": n["bc"]})
            log(f"  {json.dumps({k: v['3s']['p50'] for k, v in result['in_process'].items()})} (3 s p50, ms)")
            checkpoint()
            log("encoder alone, 3 s")
            result["encoder_only"] = encoder_only(clips, n["enc"])
            log("where a 3 s prediction's time goes; ONNX Runtime session options")
            result["stages"] = predictor_stages(c, clips[3][0], n["enc"])
            result["session_options"] = session_options_sweep(n["enc"])

            log(f"agreement (c) vs (b) on {n['agree']} RAVDESS clips")
            every = max(1, round(1440 / n["agree"]))
            with torch_threads(CORES):  # (b)'s setting; (c) runs in ORT, its torch part is tiny either way
                result["agreement"] = compare(b, c, ravdess_paths(every))
            log(f"  {result['agreement']}")
            checkpoint()
            del a, b, c, c2

        if not args.skip_http and "http" not in result:
            log("HTTP: starting torch and onnx servers")
            servers = {rt: Server(workdir / rt, server_env(workdir / rt, EMOTION_RUNTIME=rt, MLFLOW_TRACKING_URI=tracking_uri()),
                                  name=rt) for rt in ("torch", "onnx")}
            try:
                ready = {k: round(v, 1) for k, v in wait_all_ready(list(servers.values()), timeout=300).items()}
                result["http"] = http_benchmark(servers, clips, n["http"], n["rss"])
                result["http"]["ready_s"] = ready
            finally:
                for s in servers.values():
                    s.stop()
            log(f"  {json.dumps({k: v['3s']['p50'] for k, v in result['http']['latency'].items()})} (3 s p50, ms); "
                f"RSS {result['http']['rss']['onnx']}")
            checkpoint()
        if not args.skip_http and "workers" not in result:
            log("HTTP throughput with 1 and 2 workers (4 concurrent clients, 3 s clips)")
            result["workers"] = throughput_by_workers(
                workdir, server_env(workdir, EMOTION_RUNTIME="onnx", MLFLOW_TRACKING_URI=tracking_uri()), clips[3],
                clients=4, seconds=10 if q else 30)
            checkpoint()

        if not args.skip_cli and "cli" not in result:
            log(f"batch CLI on {n['cli']} clips")
            folder = workdir / "cli-clips"
            folder.mkdir()
            for path in ravdess_paths(max(1, 1440 // n["cli"]))[: n["cli"]]:
                os.symlink(path, folder / Path(path).name)
            one = next(folder.iterdir())
            result["cli"] = {rt: cli_throughput(folder, one, rt) for rt in ("torch", "onnx")}
            log(f"  {result['cli']}")
            checkpoint()

        if not args.skip_embed and "embedding" not in result:
            log(f"embedding {n['embed']} clips with the optimised encoder (scratch cache)")
            result["embedding"] = embedding_time(n["embed"], workdir)
            log(f"  {result['embedding']}")
            checkpoint()
        if not args.skip_train:
            log("training one fold of the default config in a child process")
            result["training"] = training_peak_rss(q, workdir)
            log(f"  {result['training']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["layer_probe"] = layer_probe_rows()
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    (busy0, own0), (busy1, own1) = cpu_start, cpu_snapshot()
    if not result.get("resumed"):
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / (result["seconds"] * result["machine"]["cores"])
        result["other_cpu_share"] = round(other, 3)
    result["bars"] = bars(result)
    return write_reports(result, args.out, readme=not args.no_readme)
