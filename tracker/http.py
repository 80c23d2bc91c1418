"""The one HTTP layer every source uses: client, politeness, retries and error mapping.

``make_client`` builds the httpx client (timeouts, User-Agent naming the project and its contact,
redirects followed because CT.gov answers an aliased NCT id with a 301). ``Http`` wraps it with
what public APIs ask of us:

* a per-host rate limit (pyrate-limiter), so NCBI's 3 requests/s is enforced by the client;
* retries with exponential backoff and jitter (tenacity) on 429, 5xx, timeouts and connection
  errors, honouring ``Retry-After`` when a server sends it, capped by ``backoff_cap``;
* every other 4xx fails at once with the server's own message;
* an overall deadline per request (``request_deadline``, else ``DEADLINE_FACTOR`` x
  ``timeout``): httpx's timeouts bound each read, not the whole answer, so a server that
  trickles a few bytes at a time would hold a request for hours. The body is read in chunks
  and the request abandoned when the deadline passes; that counts as a timeout (retried);
* every httpx exception is translated to ``FetchError`` here, and nowhere else.

Counters (requests, retries) feed the run log.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity
from pyrate_limiter import Duration, Limiter, Rate

from tracker import __version__
from tracker.config import Settings
from tracker.errors import FetchError, ThrottledError, redact

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A request's overall deadline, when ``request_deadline`` is not configured: this many times
# the per-read ``timeout`` (60 s by default: 5 minutes for one response, ample for a CT.gov
# page of 1000 studies on a slow line, and far short of the hours a trickling server takes).
DEADLINE_FACTOR = 5.0


def user_agent(settings: Settings) -> str:
    """The User-Agent: project, version and the operator's contact when configured."""
    contact = f"; mailto:{settings.contact_email}" if settings.contact_email else ""
    return f"msc-trial-tracker/{__version__} (+https://pypi.org/project/msc-trial-tracker{contact})"


def make_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """Build the shared httpx client. ``transport`` lets tests inject a mock transport."""
    timeout = httpx.Timeout(settings.timeout, connect=min(settings.timeout, 15.0))
    return httpx.Client(
        timeout=timeout,
        headers={"User-Agent": user_agent(settings)},
        follow_redirects=True,
        transport=transport,
    )


class _DeadlinePassed(Exception):
    """Internal: the response was still arriving when the request's deadline passed."""


class _DeadlineStream(httpx.SyncByteStream):
    """A response body stream that raises ``_DeadlinePassed`` once ``deadline`` (monotonic
    time) has passed; each chunk is one network read, itself bounded by the read timeout."""

    def __init__(self, inner: Any, deadline: float) -> None:
        self.inner = inner
        self.deadline = deadline

    def __iter__(self) -> Any:
        for chunk in self.inner:
            if time.monotonic() > self.deadline:
                raise _DeadlinePassed
            yield chunk

    def close(self) -> None:
        self.inner.close()


def request_deadline(settings: Settings) -> float:
    """Seconds one request (connect to last byte) may take before it counts as timed out."""
    configured = getattr(settings, "request_deadline", None)
    if configured:
        return float(configured)
    return settings.timeout * DEADLINE_FACTOR


class _Retryable(Exception):
    """Internal: a response or error worth another try."""

    def __init__(self, error: FetchError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RedactingFilter(logging.Filter):
    """Strips secrets (``api_key=...``) from every log record; the CLI installs it, because
    httpx logs each request URL at INFO level and an NCBI key travels in the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@dataclass
class HttpStats:
    """What one run asked of the network."""

    requests: int = 0
    retries: int = 0


class Http:
    """A polite, retrying view of one httpx client, shared by every source of a run."""

    def __init__(
        self,
        client: httpx.Client,
        settings: Settings,
        *,
        sleep: Any = time.sleep,
        deadline: float | None = None,
        retry_statuses: frozenset[int] = frozenset(),
    ) -> None:
        self.client = client
        # a source's own throttling answers beside the usual ones (EU CTIS answers 403)
        self.retry_statuses = RETRY_STATUSES | retry_statuses
        self.settings = settings
        self.deadline = request_deadline(settings) if deadline is None else deadline
        self.stats = HttpStats()
        self._limiters: dict[str, Limiter] = {}
        self._sleep = sleep

    def _limiter(self, source: str) -> Limiter:
        limiter = self._limiters.get(source)
        if limiter is None:
            rate = self.settings.source(source).rate_per_second
            # Express fractional rates (1 request per 2 s) as whole requests per interval.
            if rate >= 1:
                limit = Rate(int(rate), Duration.SECOND)
            else:
                limit = Rate(1, int(1000 / rate))
            limiter = self._limiters[source] = Limiter(limit, buffer_ms=10)
        return limiter

    def request(
        self,
        source: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        """Send one request with throttling and retries; return a 2xx response. ``json`` is a
        JSON body (EU CTIS searches by POST).

        Raises ThrottledError when 429/503 persist past the retry budget, FetchError for other
        failures (other 4xx at once, with the server's message).
        """

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = tenacity.wait_exponential_jitter(
                initial=1, max=self.settings.backoff_cap, jitter=1
            )(state)
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return min(max(exc.retry_after, 0.0), self.settings.backoff_cap)
            return backoff

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            # INFO, not WARNING: a retry that succeeds is routine; one that does not is
            # reported once, as the run's error. `tracker -v` shows every retry.
            log.info("%s: retrying after %s (try %d)", source, exc, state.attempt_number)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(self.settings.max_retries + 1),
            wait=wait,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._send_once, source, method, url, params, data, json)
        except _Retryable as exc:
            raise exc.error from exc

    def get(self, source: str, url: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        """``request(source, "GET", url, params=params)``."""
        return self.request(source, "GET", url, params=params)

    def post(self, source: str, url: str, json: Any = None,
             params: Mapping[str, Any] | None = None) -> httpx.Response:
        """``request(source, "POST", url, json=json)``: a JSON body, as EU CTIS takes."""
        return self.request(source, "POST", url, params=params, json=json)

    def _send_once(
        self,
        source: str,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None,
        json: Any = None,
    ) -> httpx.Response:
        self._limiter(source).try_acquire(source)
        self.stats.requests += 1
        deadline = time.monotonic() + self.deadline
        try:
            with self.client.stream(method, url, params=params, data=data,
                                    json=json) as response:
                response.stream = _DeadlineStream(response.stream, deadline)
                response.read()
        except _DeadlinePassed as exc:
            raise _Retryable(
                FetchError(f"{source}: timed out reading {redact(url)} (the answer was still "
                           f"arriving after the {self.deadline:g} s deadline of one request); "
                           "the server is sending too slowly, run again later")
            ) from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(
                FetchError(f"{source}: timed out reading {redact(url)} ({type(exc).__name__}); "
                           "the server is slow or unreachable, run again later")
            ) from exc
        except httpx.TransportError as exc:
            raise _Retryable(
                FetchError(f"{source}: network error on {redact(url)}: "
                           f"{type(exc).__name__}: {redact(str(exc)) or 'connection failed'}; "
                           "check the connection or proxy, then run again")
            ) from exc
        if response.status_code in self.retry_statuses:
            error = FetchError.from_response(source, response)
            raise _Retryable(error, parse_retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 400:
            raise FetchError.from_response(source, response)
        return response


__all__ = ["Http", "HttpStats", "ThrottledError", "make_client", "parse_retry_after",
           "request_deadline", "user_agent"]
