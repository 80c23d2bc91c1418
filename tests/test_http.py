"""The HTTP layer every source uses: retries, Retry-After, fail-fast 4xx, rate limits, secrets."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tracker.config import load_settings
from tracker.errors import FetchError, ThrottledError
from tracker.http import Http, make_client, parse_retry_after

# Production URLs, answered by httpx.MockTransport in every test here: nothing is sent.
CTGOV_URL = "https://clinicaltrials.gov/api/v2/studies"  # mock-served
ESEARCH_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/esearch.fcgi"  # mock-served
EFETCH_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/efetch.fcgi"  # mock-served
EPMC_URL = "https://www.ebi.ac.uk/europepmc/webservices/rest/search"  # mock-served


def _http(handler, sleeps: list[float], **overrides: object) -> Http:  # type: ignore[no-untyped-def]
    settings = load_settings({"db": "x.sqlite", **overrides}, env={})
    client = make_client(settings, transport=httpx.MockTransport(handler))
    return Http(client, settings, sleep=sleeps.append)


def test_retry_after_is_honoured_and_capped() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "7"}),
               httpx.Response(503, headers={"Retry-After": "999"}),
               httpx.Response(200, json={"ok": True})]
    sleeps: list[float] = []
    http = _http(lambda request: answers.pop(0), sleeps, backoff_cap=30)
    assert http.get("ctgov", CTGOV_URL).json() == {"ok": True}
    assert sleeps == [7.0, 30.0]
    assert (http.stats.requests, http.stats.retries) == (3, 2)


def test_backoff_without_retry_after_grows_with_jitter() -> None:
    sleeps: list[float] = []
    http = _http(lambda request: httpx.Response(502), sleeps, max_retries=3)
    with pytest.raises(FetchError, match="HTTP 502"):
        http.get("europepmc", EPMC_URL)
    assert len(sleeps) == 3 and all(s > 0 for s in sleeps)
    assert sleeps[2] > sleeps[0]


def test_other_4xx_fails_at_once_with_the_servers_message() -> None:
    sleeps: list[float] = []
    http = _http(lambda request: httpx.Response(400, text="Invalid Essie expression: AREA[x"),
                 sleeps)
    with pytest.raises(FetchError) as info:
        http.get("ctgov", CTGOV_URL, {"query.term": "x"})
    assert sleeps == [] and "Invalid Essie expression" in str(info.value)
    assert "HTTP 400" in str(info.value)


def test_persistent_throttling_is_a_throttled_error() -> None:
    http = _http(lambda request: httpx.Response(429), [], max_retries=2)
    with pytest.raises(ThrottledError, match="throttling"):
        http.get("pubmed", ESEARCH_URL)


def test_api_key_never_reaches_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    http = _http(handler, [], max_retries=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FetchError) as info:
        http.get("pubmed", EFETCH_URL,
                 {"api_key": "SECRETKEY123", "db": "pubmed"})
    assert "SECRETKEY123" not in str(info.value)
    assert "SECRETKEY123" not in caplog.text


def test_pubmed_rate_is_3_per_second_and_10_with_a_key() -> None:
    assert load_settings({"db": "x"}, env={}).source("pubmed").rate_per_second == 3.0
    keyed = load_settings({"db": "x", "pubmed_api_key": "k"}, env={})
    assert keyed.source("pubmed").rate_per_second == 10.0
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        return httpx.Response(200)

    http = _http(handler, [])
    for _ in range(7):
        http.get("pubmed", ESEARCH_URL)
    # never more than 3 inside any one-second window
    assert all(stamps[i + 3] - stamps[i] >= 0.99 for i in range(len(stamps) - 3))


@pytest.mark.parametrize(("value", "expected"), [("5", 5.0), (None, None), ("soon", None),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_verbose_cli_logs_requests_without_the_api_key(tmp_path, studies_json) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    from pathlib import Path

    from replay_server import ReplayServer, fixture_dir, load_pubmed_articles

    exe = Path(sys.executable).parent / "tracker"
    with ReplayServer(pubmed_articles=load_pubmed_articles(fixture_dir("pubmed"))) as srv:
        env = {**os.environ, "TRACKER_DB": str(tmp_path / "v.sqlite"),
               "TRACKER_PUBMED_URL": srv.pubmed_url, "TRACKER_PUBMED_API_KEY": "SECRETKEY123",
               "TRACKER_PUBMED_RATE_PER_SECOND": "50"}
        out = subprocess.run([str(exe), "-v", "update", "--source", "pubmed"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        sent = srv.requests_for("pubmed")
        assert sent and all(r.get("api_key") == "SECRETKEY123" for r in sent)
    assert "HTTP Request" in out.stderr  # the requests were logged ...
    assert "SECRETKEY123" not in out.stderr + out.stdout  # ... without the key
    assert "alembic" not in out.stderr  # migration chatter stays out of -v


def test_redacting_filter_strips_keys_from_get_urls() -> None:
    from tracker.http import RedactingFilter

    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s",
                               ("GET", "https://x/efetch.fcgi?db=pubmed&api_key=SECRET1&id=1"),
                               None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "HTTP Request: GET https://x/efetch.fcgi?db=pubmed&api_key=***&id=1"


class _Trickle(httpx.SyncByteStream):
    """A body arriving 64 bytes at a time, ``pause`` seconds apart (each read succeeds)."""

    def __init__(self, chunks: int, pause: float) -> None:
        self.chunks, self.pause = chunks, pause

    def __iter__(self):  # type: ignore[no-untyped-def]
        for _ in range(self.chunks):
            time.sleep(self.pause)
            yield b"x" * 64


def test_a_trickling_answer_times_out_at_the_overall_deadline_and_is_retried() -> None:
    sleeps: list[float] = []
    settings = load_settings({"db": "x.sqlite", "max_retries": 2}, env={})
    client = make_client(settings, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, stream=_Trickle(1000, 0.02))))
    http = Http(client, settings, sleep=sleeps.append, deadline=0.15)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"^ctgov: timed out reading https://clinicaltrials\.gov"
                                         r"/api/v2/studies \(the answer was still arriving after "
                                         r"the 0\.15 s deadline of one request\)"):
        http.get("ctgov", CTGOV_URL)
    assert time.monotonic() - t0 < 5.0  # 3 tries of 0.15 s (1 request/s), not 3 x 20 s
    assert (http.stats.requests, http.stats.retries) == (3, 2) and len(sleeps) == 2


def test_a_slow_answer_within_the_deadline_is_read_whole() -> None:
    settings = load_settings({"db": "x.sqlite"}, env={})
    client = make_client(settings, transport=httpx.MockTransport(
        lambda request: httpx.Response(200, stream=_Trickle(5, 0.01))))
    http = Http(client, settings, sleep=[].append, deadline=5.0)
    assert http.get("ctgov", CTGOV_URL).content == b"x" * 320
    assert http.stats.retries == 0


def test_the_deadline_follows_the_timeout() -> None:
    from tracker.http import DEADLINE_FACTOR, request_deadline

    assert request_deadline(load_settings({"db": "x", "timeout": 2}, env={})) == \
        2 * DEADLINE_FACTOR
    settings = load_settings({"db": "x"}, env={})
    assert Http(make_client(settings), settings).deadline == settings.timeout * DEADLINE_FACTOR


CTIS_URL = "https://euclinicaltrials.eu/ctis-public-api/search"  # mock-served


def test_post_sends_a_json_body_and_resends_it_on_a_retry() -> None:
    """EU CTIS searches by POST with a JSON body (API_NOTES 6.2); a retried try sends the
    same body, rate-limited like any request."""
    seen: list[tuple[str, str, bytes]] = []
    answers = [httpx.Response(503), httpx.Response(200, json={"data": []})]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers["content-type"], request.content))
        return answers.pop(0)

    sleeps: list[float] = []
    http = _http(handler, sleeps, backoff_cap=0.1)
    body = {"pagination": {"page": 1, "size": 100}, "searchCriteria": {"containAll": "msc"}}
    assert http.post("ctis", CTIS_URL, json=body).json() == {"data": []}
    assert [m for m, _, _ in seen] == ["POST", "POST"]
    assert all(ct == "application/json" for _, ct, _ in seen)
    assert seen[0][2] == seen[1][2] and b'"containAll":"msc"' in seen[0][2].replace(b" ", b"")
    assert (http.stats.requests, http.stats.retries) == (2, 1)


def test_a_sources_own_throttling_status_is_retried() -> None:
    """EU CTIS answers 403 when it throttles (API_NOTES 6.4): its Http retries 403 as it
    retries 429; another source's 403 still fails at once."""
    answers = [httpx.Response(403), httpx.Response(200, json={"data": []})]
    sleeps: list[float] = []
    settings = load_settings({"db": "x.sqlite", "backoff_cap": 0.1}, env={})
    client = make_client(settings, transport=httpx.MockTransport(lambda r: answers.pop(0)))
    http = Http(client, settings, sleep=sleeps.append, retry_statuses=frozenset({403}))
    assert http.post("ctis", CTIS_URL, json={}).json() == {"data": []}
    assert len(sleeps) == 1
    plain = _http(lambda request: httpx.Response(403, text="Forbidden"), [])
    with pytest.raises(FetchError, match="HTTP 403"):
        plain.get("ctgov", CTGOV_URL)
