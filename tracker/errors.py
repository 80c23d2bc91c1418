"""The tracker's exceptions: one root, a shallow tree of noun-named subclasses.

    TrackerError                 anything the CLI turns into one line and exit code 1
    ├── ConfigError              a bad option, config file or environment value
    ├── FetchError               a source could not be read (network, HTTP status, throttling)
    │   └── ThrottledError       the source kept answering 429/503 after every retry
    ├── ParseError               a response or record did not have the shape the source promises
    ├── IncompleteError          a window ended short of the count the source announced
    ├── StorageError             the database refused or is at the wrong schema
    ├── LockedError              another update holds the database
    └── NotFoundError            an id asked for is not in the database

Every message says what failed and what to do about it; the CLI prints ``str(exc)`` as is.
Messages never contain API keys: ``redact`` removes every configured secret's value wherever
it occurs (``register_secret``; a server may echo a key in a body), and ``key=...`` parameters
and JSON ``"api-key": "..."`` pairs whatever their value. ``one_line`` redacts too, so every
message that reaches a terminal, a log or the run log goes through it.
"""

from __future__ import annotations

import re

import httpx


class TrackerError(Exception):
    """Root of every error the tracker reports to a user."""


class ConfigError(TrackerError):
    """A configuration value, option or file is invalid."""


class FetchError(TrackerError):
    """A source could not be read: network failure or an HTTP error status."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code

    @classmethod
    def from_response(cls, source: str, response: httpx.Response) -> FetchError:
        """Build the error for a failed response, choosing the subclass from its status."""
        body = response.text.strip().splitlines()
        detail = body[0][:200] if body else response.reason_phrase
        # Host and path only: the query string holds the (long) search expression and keys.
        url = (f"{response.request.url.host}{response.request.url.path}"
               if response.request else "?")
        klass = ThrottledError if response.status_code in (429, 503) else cls
        hint = (
            "the server is throttling; wait and run again, or lower the rate limit in config"
            if klass is ThrottledError
            else "check the query and base URL in config"
        )
        return klass(
            f"{source}: HTTP {response.status_code} from {url}: {detail} ({hint})",
            status_code=response.status_code,
        )


class ThrottledError(FetchError):
    """The source answered 429 or 503 on every try."""


class ParseError(TrackerError):
    """A response or a record was not in the shape the source documents."""


class IncompleteError(TrackerError):
    """Fewer records arrived than the source said it had."""


class StorageError(TrackerError):
    """The database could not be opened, migrated or written."""


class LockedError(TrackerError):
    """Another update is running against the same database."""


class NotFoundError(TrackerError):
    """A record asked for by id is not in the database."""


_SECRET_PARAMS = re.compile(r"((?:api_key|apikey|token|key)=)[^&\s\"']+", re.IGNORECASE)
_SECRET_JSON = re.compile(r"""(["']?(?:api[-_]?key|apikey|token)["']?\s*[:=]\s*["'])[^"']*""",
                          re.IGNORECASE)
_SECRETS: set[str] = set()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret (an API key) so that ``redact`` removes its value from any text.

    Values shorter than four characters are not registered: masking them would mangle
    ordinary text, and no real key is that short."""
    if value and len(value.strip()) >= 4:
        _SECRETS.add(value.strip())


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space, and
    secrets redacted."""
    return redact(" ".join(text.split()))


def redact(text: str) -> str:
    """``text`` without secrets: every registered secret's value (longest first), then
    ``key=...`` query parameters and ``"api-key": "..."`` pairs, replaced by ``***``."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _SECRET_PARAMS.sub(r"\1" + MASK, text)
    return _SECRET_JSON.sub(r"\1" + MASK, text)
