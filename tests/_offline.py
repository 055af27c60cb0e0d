"""No network for real: the hub's offline flags set and every socket connection refused."""

from __future__ import annotations

import socket

import pytest


def _refuse_network(*args, **kwargs):
    raise OSError("network access attempted during an offline test")


def go_offline(mp: pytest.MonkeyPatch) -> None:
    """Offline for real: hub env flags set and any socket connection fails."""
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setattr(socket.socket, "connect", _refuse_network)
    mp.setattr(socket, "create_connection", _refuse_network)
