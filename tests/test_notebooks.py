"""The notebooks run top to bottom (nbclient) on the smoke config, after the smoke CV."""

import os

import nbformat
import pytest

from notebooks.build_notebooks import NOTEBOOKS, build


def test_committed_notebooks_match_their_sources():
    """The committed .ipynb files are built from build_notebooks.py (sources can't drift)."""
    from pathlib import Path

    for name, cells in NOTEBOOKS.items():
        nb = nbformat.read(Path("notebooks") / name, as_version=4)
        assert [c.source for c in nb.cells] == [src for _, src in cells], name


def test_notebooks_execute_on_smoke(smoke_run, smoke_cfg, tmp_path, monkeypatch):
    from emotion_core import cv

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
