"""Open a local HTML file in real headless Chromium (Debian's ``chromium`` package) through
Playwright, recording every request, console message and page error.

Playwright's own browser downloads are never used (``playwright install`` needs the network):
the test machine's Chromium is launched by path. ``.ci/run`` installs it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 # no name but loopback resolves: the browser, a process of its own that the
                 # socket guard of tests/conftest.py does not reach, cannot connect elsewhere
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]
TIMEOUT_MS = 30_000


def chromium_path() -> str:
    """Debian's Chromium, or a test failure saying how to get it."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not found:
        pytest.fail("Chromium not found: install Debian's 'chromium' package "
                    "(apt-get install chromium; .ci/run does); the digest's browser tests "
                    "need a real browser and do not download one")
    return found


@dataclass
class PageLog:
    """What the page did: every request URL, console errors, uncaught errors, dialogs."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@contextmanager
def browser() -> Iterator[Any]:
    """A launched headless Chromium, closed on the way out whatever happens."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                      headless=True, timeout=TIMEOUT_MS)
        try:
            yield chromium
        finally:
            chromium.close()


def _local(url: str) -> bool:
    return url.startswith(("file:", "data:", "blob:", "http://127.0.0.1:",
                           "http://localhost:"))


@contextmanager
def open_page(chromium: Any, path: Path, width: int, height: int,
              **context_options: Any) -> Iterator[tuple[Any, PageLog]]:
    """``path`` loaded in a fresh context of ``width`` x ``height`` CSS pixels; yields the
    page and its log. Listeners are attached before the page loads, so nothing is missed."""
    context = chromium.new_context(viewport={"width": width, "height": height},
                                   java_script_enabled=True, **context_options)
    try:
        # Only local pages load (a file, the loopback server a test started); any other
        # request (a registry link followed, a font or script from elsewhere) is refused
        # before it leaves.
        context.route("**/*", lambda route: route.continue_()
                      if _local(route.request.url) else route.abort())
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.set_default_navigation_timeout(TIMEOUT_MS)
        log = PageLog()
        page.on("request", lambda request: log.requests.append(request.url))
        page.on("console", lambda msg: log.console_errors.append(msg.text)
                if msg.type == "error" else None)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))

        def on_dialog(dialog: Any) -> None:
            log.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=TIMEOUT_MS)
        yield page, log
    finally:
        context.close()
