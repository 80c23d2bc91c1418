"""The test-wide network guard (tests/conftest.py) refuses anything but loopback."""

from __future__ import annotations

import socket

import pytest


def test_outbound_connection_is_refused() -> None:
    with socket.socket() as s, pytest.raises(OSError, match="may not reach the network"):
        s.connect(("93.184.216.34", 443))  # any public address


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.socket() as client:
            client.connect(server.getsockname())
