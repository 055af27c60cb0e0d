"""Numbers in the README and docs/ are generated: each generated block equals what its committed report renders to
(`make docs` rewrites them all; each pipeline rewrites its own when it runs)."""

from __future__ import annotations

import pytest

from emotion_core.config import PROJECT_ROOT
from emotion_core.research.reporting import GENERATED_BLOCKS, generated_section
from pipelines.docs import expected_blocks

EXPECTED = expected_blocks()


@pytest.mark.parametrize("name", sorted(GENERATED_BLOCKS))
def test_block_is_in_its_file_once(name):
    text = (PROJECT_ROOT / GENERATED_BLOCKS[name]).read_text()
    assert text.count(f"<!-- BEGIN generated:{name} -->") == 1 and text.count(f"<!-- END generated:{name} -->") == 1


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_block_matches_its_report(name):
    assert generated_section(name) == EXPECTED[name], f"stale generated block {name!r}: run `make docs`"
