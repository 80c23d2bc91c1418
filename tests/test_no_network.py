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


def test_a_process_a_test_starts_is_refused_too() -> None:
    """``tracker`` processes run with tests/dbsnapshot.base_env: the same guard."""
    import subprocess
    import sys

    from dbsnapshot import base_env

    code = ("import socket\ns = socket.socket()\ntry:\n    s.connect(('93.184.216.34', 443))\n"
            "except OSError as e:\n    print(e)")
    res = subprocess.run([sys.executable, "-c", code], env=base_env(), capture_output=True,
                         text=True, timeout=60, check=False)
    assert "may not reach the network" in res.stdout, (res.stdout, res.stderr)
