"""The notebooks run top to bottom (nbclient) on the smoke config, after the smoke CV (that the committed
notebooks are built from their sources: tests/unit/test_notebook_sources.py)."""

import os

import nbformat

from notebooks.build_notebooks import build


def test_notebooks_execute_on_smoke(smoke_run, smoke_cfg, tmp_path, monkeypatch):
    from emotion_core.research import cv

    reports = os.path.join(os.environ["EMOTION_REPORTS_DIR"], "smoke")
    if not os.path.exists(os.path.join(reports, "cv.json")):
        cv.run(smoke_cfg, random_split_check=False, adapted=(), progress=False)
    monkeypatch.setenv("EMOTION_NB_CONFIG", "smoke")
    paths = build(execute=True, out_dir=tmp_path)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors, (path.name, errors)
        assert any(c.outputs for c in nb.cells if c.cell_type == "code"), path.name
