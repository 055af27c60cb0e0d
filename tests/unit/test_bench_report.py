"""The benchmark report says which CPU it measured and never overwrites another CPU's committed figures."""

from __future__ import annotations

import json

from bench.report import report_stem, same_cpu
from emotion_core.encoders.onnx.export import machine_identity

VNNI = {"cpu": "AMD EPYC", "isa": ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"]}
AVX2 = {"cpu": "AMD EPYC", "isa": ["avx2", "fma"]}


def test_same_model_with_other_int8_kernels_is_another_cpu():
    assert same_cpu(VNNI, {**VNNI, "isa": [*VNNI["isa"], "avx512bw"]})  # a flag no int8 kernel choice hinges on
    assert not same_cpu(VNNI, AVX2)
    assert not same_cpu(VNNI, {**VNNI, "cpu": "Intel Xeon"})


def test_a_run_on_another_cpu_is_written_beside_the_committed_one(tmp_path):
    assert report_stem({"machine": AVX2}, tmp_path) == "benchmark"  # nothing committed yet
    (tmp_path / "benchmark.json").write_text(json.dumps({"machine": VNNI}))
    assert report_stem({"machine": VNNI}, tmp_path) == "benchmark"
    assert report_stem({"machine": AVX2}, tmp_path) == "benchmark-amd-epyc-avx2"
    xeon = {"machine": {**VNNI, "cpu": "Intel(R) Xeon(R) Platinum"}}
    assert report_stem(xeon, tmp_path) == "benchmark-intel-r-xeon-r-platinum-avx-vnni"


def test_this_machine_is_named():
    me = machine_identity()
    assert me["cpu"] and isinstance(me["isa"], list) and me["onnxruntime"]


def test_the_report_shows_where_the_time_goes_and_what_each_session_option_costs():
    from pathlib import Path

    from bench.report import markdown

    reports = sorted(Path(__file__).parents[2].glob("reports/benchmark*.json"))
    with_profile = [json.loads(p.read_text()) for p in reports if "session_options" in json.loads(p.read_text())]
    assert with_profile, "no committed benchmark carries the profile sections (make bench writes them)"
    r = with_profile[0]
    md = markdown(r)
    served = next(iter(r["session_options"]["int8"]))
    assert served.startswith("served:") and f"| {served} | " in md and "(1.00)" in md
    total = next(v["p50"] for k, v in r["stages"].items() if k.startswith("predict()"))
    assert r["stages"]["encoder"]["p50"] < total and "| encoder |" in md
