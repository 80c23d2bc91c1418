"""sources.base.follow_cursor: the one pager of the token- and cursor-paged sources (CT.gov's
nextPageToken, Europe PMC's cursorMark). Pages are made of ids only: the pager never looks
inside an item; the sources' end-to-end tests page real recorded responses through it."""

from __future__ import annotations

import pytest

from sources.base import follow_cursor
from tracker.errors import IncompleteError, ParseError


def _server(pages: list[tuple[list[str], int | None, str | None]], asked: list):
    def get(token):
        asked.append(token)
        return pages[len(asked) - 1]
    return get


def test_follows_tokens_to_the_end_and_announces_the_total_once() -> None:
    asked: list = []
    get = _server([(["a", "b"], 5, "t1"), (["c", "d"], 5, "t2"), (["e"], 5, None)], asked)
    pages = list(follow_cursor("src", 2, get))
    assert [p.items for p in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert [p.total for p in pages] == [5, None, None]
    assert asked == [None, "t1", "t2"]


def test_a_token_sent_twice_is_one_error_line() -> None:
    get = _server([(["a"], 9, "t1"), (["b"], 9, "t1")], [])
    with pytest.raises(ParseError, match=r"^src: the API repeated cursor 't1'; paging stopped"):
        list(follow_cursor("src", 1, get, what="cursor"))


def test_the_first_cursor_coming_back_is_a_repeat_too() -> None:
    get = _server([(["a"], 9, "*")], [])
    with pytest.raises(ParseError, match="repeated page token"):
        list(follow_cursor("src", 1, get, "*"))


def test_more_pages_than_the_total_allows_fail_instead_of_paging_forever() -> None:
    endless = [([f"r{i}"], 2, f"t{i}") for i in range(50)]
    asked: list = []
    with pytest.raises(IncompleteError, match=r"^src: paging did not end"):
        list(follow_cursor("src", 1, _server(endless, asked)))
    assert len(asked) == 4  # 2 records of 1 a page, and the two pages of margin


def test_the_error_class_is_the_sources_own() -> None:
    class MyError(ParseError):
        pass

    get = _server([(["a"], 3, "x"), (["b"], 3, "x")], [])
    with pytest.raises(MyError):
        list(follow_cursor("src", 1, get, error=MyError))
