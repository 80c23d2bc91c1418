"""The test-wide network guard (tests/conftest.py) refuses anything but loopback."""

from __future__ import annotations

import socket
from pathlib import Path

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


def test_the_browser_reaches_no_host(tmp_path: Path) -> None:
    """The browser tests' Chromium (tests/browser.py) loads the page's own file and nothing
    else: an image, a script or a fetch of a live registry URL fails before it leaves."""
    from browser import browser, open_page

    page_file = tmp_path / "crafted_links.html"
    page_file.write_text('<!doctype html><meta charset="utf-8"><title>t</title>'
                         '<img src="https://clinicaltrials.gov/favicon.ico" alt="x">'
                         '<a href="https://www.isrctn.com/">a registry</a>')
    with browser() as chromium, open_page(chromium, page_file, 400, 300) as (page, _log):
        outcome = page.evaluate(
            "() => fetch('https://eutils.ncbi.nlm.nih.gov/').then(() => 'reached', "
            "e => 'refused: ' + e.name)")
        image_loaded = page.evaluate("() => document.images[0].naturalWidth > 0")
    assert outcome.startswith("refused")
    assert not image_loaded
