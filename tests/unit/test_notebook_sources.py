"""The committed notebooks are their sources in notebooks/build_notebooks.py (running them on the smoke run:
tests/integration/test_notebooks.py)."""

import nbformat

from notebooks.build_notebooks import NOTEBOOKS


def test_committed_notebooks_match_their_sources():
    """The committed .ipynb files are built from build_notebooks.py (sources can't drift)."""
    from pathlib import Path

    for name, cells in NOTEBOOKS.items():
        nb = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / name, as_version=4)
        assert [c.source for c in nb.cells] == [src for _, src in cells], name
