"""Fixtures for both tiers, and nothing that needs data: `tests/unit` runs with EMOTION_DATA_DIR pointing at an
empty folder. The RAVDESS check and the data, pipeline and server fixtures are in tests/integration/conftest.py.

    pytest tests/unit           # the unit tier: no dataset, no server, no network (~1-2 min on 2 cores)
    pytest tests/integration    # real encoder on RAVDESS, real pipeline, real `bentoml serve`, real browser
    pytest                      # both (testpaths = ["tests"]); `-m slow` for the long checks
"""

from __future__ import annotations

import pytest

from tests._offline import go_offline


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    go_offline(monkeypatch)
