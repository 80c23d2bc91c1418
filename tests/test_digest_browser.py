"""The HTML digest in real headless Chromium (Debian's package, launched by Playwright): it
loads nothing but itself and its data: images, logs no error, shows the crafted record's
markup as text, fits a phone's width, and prints links with their URLs.

The digest is the one tests/test_digest_render.py builds from real recorded records (with its
crafted hostile ones, described there). Screenshots at phone and desktop width are written to
the test's tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import PageLog, browser, open_page
from test_digest_render import HOSTILE_TITLE, empty_digest, sample_digest

from tracker.digest_render import render_html

PHONE = (390, 844)
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def digest_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digest") / "digest.html"
    path.write_text(render_html(sample_digest()), encoding="utf-8")
    return path


def _assert_clean_load(page: Any, log: PageLog, path: Path) -> None:
    page_url = path.resolve().as_uri()
    assert log.requests, "no request recorded at all: the listener is not working"
    others = [u for u in log.requests if u != page_url and not u.startswith("data:")]
    assert not others, f"the page requested more than itself and data: URIs: {others}"
    assert not log.console_errors, log.console_errors
    assert not log.page_errors, log.page_errors
    assert not log.dialogs, log.dialogs


def _assert_images_rendered(page: Any, count: int) -> None:
    images = page.eval_on_selector_all(
        "img", """els => els.map(e => ({src: e.currentSrc.slice(0, 22), complete: e.complete,
            natural: e.naturalWidth, w: e.getBoundingClientRect().width,
            h: e.getBoundingClientRect().height}))""")
    assert len(images) == count
    for img in images:
        assert img["src"] == "data:image/png;base64,", img
        assert img["complete"] and img["natural"] > 0, img
        assert img["w"] > 0 and img["h"] > 0, img


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_digest_in_chromium(chromium: Any, digest_file: Path, tmp_path: Path,
                            size: tuple[int, int]) -> None:
    width, height = size
    with open_page(chromium, digest_file, width, height) as (page, log):
        page.screenshot(path=str(tmp_path / f"digest-{width}.png"), full_page=True)
        _assert_clean_load(page, log, digest_file)
        _assert_images_rendered(page, 3)
        assert page.eval_on_selector_all("script", "els => els.length") == 0
        body = page.inner_text("body")
        assert "<script>" in body and HOSTILE_TITLE in body
        assert "<img src=x onerror=alert(1)>" in body
        assert "4 new trials" in body and "No new trials" not in body
        overflow = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1] + 1, f"horizontal overflow: {overflow}"
        if size == PHONE:
            # Images scaled down to the column, not cropped.
            widths = page.eval_on_selector_all(
                "img", "els => els.map(e => e.getBoundingClientRect().right)")
            assert max(widths) <= width
        if size == DESKTOP:
            main_width = page.evaluate(
                "() => document.querySelector('main').getBoundingClientRect().width")
            assert main_width <= 52 * 16 + 1  # the max-width container


def test_empty_digest_in_chromium(chromium: Any, tmp_path: Path) -> None:
    path = tmp_path / "empty.html"
    path.write_text(render_html(empty_digest()), encoding="utf-8")
    with open_page(chromium, path, *PHONE) as (page, log):
        page.screenshot(path=str(tmp_path / "empty-390.png"), full_page=True)
        _assert_clean_load(page, log, path)
        _assert_images_rendered(page, 0)
        body = page.inner_text("body")
        assert "No new trials in this period." in body
        assert body.count("No data for this chart in this period.") == 3


def test_digest_prints_links_with_urls(chromium: Any, digest_file: Path,
                                       tmp_path: Path) -> None:
    with open_page(chromium, digest_file, *DESKTOP) as (page, log):
        page.emulate_media(media="print")
        after = page.eval_on_selector(  # a CSS selector on the page: no link is followed
            "a[href^='https://clinicaltrials.gov/']",
            "a => getComputedStyle(a, '::after').content")
        assert "https://clinicaltrials.gov/study/" in after
        background = page.evaluate(
            "() => getComputedStyle(document.querySelector('.item')).backgroundColor")
        assert background in ("rgba(0, 0, 0, 0)", "transparent")
        assert page.evaluate(
            "() => getComputedStyle(document.querySelector('.item')).breakInside") == "avoid"
        pdf = page.pdf(format="A4")
        assert pdf.startswith(b"%PDF")
        (tmp_path / "digest.pdf").write_bytes(pdf)
        _assert_clean_load(page, log, digest_file)
