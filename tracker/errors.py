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
Messages never contain API keys: ``redact`` strips them from URLs before they get here.
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


_SECRET_PARAMS = re.compile(r"((?:api_key|apikey|token|key)=)[^&\s]+", re.IGNORECASE)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(text.split())


def redact(text: str) -> str:
    """Replace secret query-string values (``api_key=...``) in ``text`` with ``***``."""
    return _SECRET_PARAMS.sub(r"\1***", text)
