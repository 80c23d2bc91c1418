"""Settings: one frozen object, built from defaults < TOML file < ``TRACKER_*`` env < CLI flags.

The config file is ``$TRACKER_CONFIG`` if set, else ``config.toml`` in the platformdirs user
config dir (``tracker config`` prints it). Every key is optional; unknown keys are an error
so that a typo does not silently fall back to a default. Example::

    db = "/srv/tracker/msc.sqlite"          # or an SQLAlchemy URL: postgresql+psycopg://...
    contact_email = "me@example.org"
    overlap_days = 3

    [ctgov]
    url = "https://clinicaltrials.gov/api/v2"
    query = '"mesenchymal stem" OR "mesenchymal stromal"'
    rate_per_second = 1.0

Validation happens in one place: the field declarations of :class:`Settings` and
:class:`SourceSettings` below. Their ``Annotated`` metadata (``_Number``, ``_Text``) are the
rules, and pydantic v2 applies them to the merged values after each layer (file, environment,
options), so a bad value is reported with the layer it came from, even when a higher layer
overrides it (the nightly job runs without the flags). Every effective value remembers where it
came from (``Settings.origins``; ``describe_settings`` is what ``tracker config`` prints).

Importing this module reads nothing and does not import pydantic; ``load_settings`` does both
(pydantic is loaded by the database layer anyway).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import tomllib
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import platformdirs

from tracker.errors import ConfigError

APP_NAME = "msc-tracker"

# Essie syntax, searched in ClinicalTrials.gov's BasicSearch area (titles, conditions,
# interventions and their other names, keywords, summaries). Phrases catch both "stem" and
# "stromal" spellings; product names catch registrations that never say "mesenchymal".
DEFAULT_CTGOV_QUERY = (
    '"mesenchymal stem" OR "mesenchymal stromal" OR "mesenchymal stem cell" '
    'OR "mesenchymal stromal cell" OR "mesenchymal progenitor" OR "mesenchymal precursor" '
    'OR "multipotent stromal" OR "mesenchymal cell" OR "MSC" OR "MSCs" OR "stromal vascular fraction" '
    'OR "bone marrow aspirate concentrate" OR "BMAC" OR "Wharton\'s jelly" '
    'OR "adipose derived stem" OR "adipose-derived stem" OR "adipose derived regenerative" '
    'OR "micro-fragmented adipose" OR "Lipogems" OR "remestemcel" OR "darvadstrocel" '
    'OR "rexlemestrocel" OR "Stempeucel" OR "Cartistem" OR "JointStem" OR "Elixcyte" '
    'OR "Alofisel" OR "Prochymal" OR "Temcell" OR "MultiStem" OR "Cymerus"'
)
# PubMed query syntax (E-utilities esearch ``term``).
DEFAULT_PUBMED_QUERY = (
    '"Mesenchymal Stem Cells"[MeSH Terms] OR "Mesenchymal Stem Cell Transplantation"[MeSH Terms] '
    'OR "mesenchymal stem cell*"[Title/Abstract] OR "mesenchymal stromal cell*"[Title/Abstract] '
    'OR "stromal vascular fraction"[Title/Abstract] OR "bone marrow aspirate concentrate"[Title/Abstract]'
)
# Europe PMC: a bare term matches the full text of open-access articles too (Europe PMC's
# search covers metadata *and* full text), which pulls in every paper that mentions MSCs
# anywhere in its body. So every term is fielded, as the PubMed query is: title, abstract,
# keywords (KW) and MeSH headings (MESH). Lucene phrases take no wildcard, so plurals are
# spelled out. Preprints (SRC:PPR) have titles and abstracts and stay in.
EUROPEPMC_FIELDS = ("TITLE", "ABSTRACT", "KW")
EUROPEPMC_PHRASES = (
    "mesenchymal stem cell", "mesenchymal stem cells", "mesenchymal stromal cell",
    "mesenchymal stromal cells", "stromal vascular fraction", "bone marrow aspirate concentrate",
)
EUROPEPMC_MESH = ("Mesenchymal Stem Cells", "Mesenchymal Stem Cell Transplantation")
DEFAULT_EUROPEPMC_QUERY = "(" + " OR ".join(
    [f'{field}:"{phrase}"' for phrase in EUROPEPMC_PHRASES for field in EUROPEPMC_FIELDS]
    + [f'MESH:"{heading}"' for heading in EUROPEPMC_MESH]) + ")"

# The registries beyond CT.gov (issue 13; their fetchers are in sources/, on by default: a
# registry's failure is one line and leaves the other sources' runs standing).
DEFAULT_ISRCTN_QUERY = ('"mesenchymal stem" OR "mesenchymal stromal" OR "stromal vascular '
                        'fraction" OR "bone marrow aspirate concentrate" OR "Wharton\'s jelly"')
DEFAULT_EUCTR_QUERY = 'mesenchymal OR "stromal vascular fraction" OR "bone marrow concentrate"'
DEFAULT_CTIS_QUERY = "mesenchymal"

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_OVERLAP_DAYS = 3
DEFAULT_SCHEDULE = "30 2 * * *"  # cron: 02:30 local time every night

# ----------------------------------------------------------------- the rules ---------------
#
# Two kinds of ``Annotated`` metadata. Each knows how to describe itself in an error message,
# and hands pydantic its core schema only when ``load_settings`` first builds the validator.


def _reject_bool(value: Any) -> Any:
    # TOML ``timeout = true`` must not become 1.0 (pydantic's lax mode would allow it).
    if isinstance(value, bool):
        raise ValueError("is true/false, not a number")  # noqa: TRY004 - pydantic wants ValueError
    return value


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class _Number:
    """A finite int or float within bounds; strings (from the environment) are parsed."""

    unit: str
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    note: str = ""

    def describe(self, kind: type) -> str:
        whole = "a whole number of " if kind is int else ""
        if self.ge is not None and self.ge == self.le:
            return f"{_fmt(self.ge)}{self.note}"
        low = (f"more than {_fmt(self.gt)}" if self.gt is not None
               else f"at least {_fmt(self.ge)}" if self.ge is not None else "")
        high = f"at most {_fmt(self.le)}" if self.le is not None else ""
        return f"{whole}{self.unit}, " + " and ".join(p for p in (low, high) if p) + self.note

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema as cs

        bounds = {k: v for k, v in (("gt", self.gt), ("ge", self.ge), ("le", self.le))
                  if v is not None}
        if source is int:
            inner = cs.int_schema(**{k: int(v) for k, v in bounds.items()})
        else:
            inner = cs.float_schema(allow_inf_nan=False, **bounds)
        return cs.no_info_before_validator_function(_reject_bool, inner)


@dataclass(frozen=True)
class _Text:
    """A string with no control characters, passed through ``check`` (which may normalise it
    or raise ValueError with what is wrong, phrased to follow the value)."""

    what: str
    example: str
    check: Callable[[str], str] | None = None

    def describe(self, kind: type) -> str:
        return self.what

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema as cs

        return cs.no_info_after_validator_function(self._validate, cs.str_schema())

    def _validate(self, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        if self.check is not None:
            value = self.check(value)
            if not value.strip():
                raise ValueError("is empty")
        _no_control(value)
        return value


_CHAR_NAMES = {"\0": "NUL", "\t": "tab", "\n": "line feed", "\r": "carriage return",
               "\x1b": "escape", "\x7f": "delete"}


def _no_control(value: str) -> None:
    # Cc: C0/C1 controls (CR, LF, NUL, ESC...); Cf: invisible format characters (zero-width,
    # bidi overrides); Zl/Zp: line and paragraph separators. Any of them in a header value, a
    # URL or a path is a mistake or an injection.
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            name = _CHAR_NAMES.get(ch) or unicodedata.name(ch, "").lower() or "control"
            raise ValueError(f"contains a control character (U+{ord(ch):04X} {name})")


def _no_spaces(value: str) -> None:
    if any(ch.isspace() for ch in value):
        raise ValueError("contains a space")


def _check_email(value: str) -> str:
    _no_control(value)
    _no_spaces(value)
    local, _, domain = value.partition("@")
    if value.count("@") != 1 or not local or not domain:
        raise ValueError("is not an e-mail address (one @ between a name and a domain)")
    if "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise ValueError("has no domain such as example.org after the @")
    bad = sorted(set(value) & set('<>()[]\\,;:"'))
    if bad:
        raise ValueError(f"contains {''.join(bad)!r}, which an e-mail address cannot hold")
    return value


def _check_url(value: str) -> str:
    _no_control(value)
    _no_spaces(value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("does not start with http:// or https://")
    if not parts.hostname:
        raise ValueError("has no host name")
    if parts.query or parts.fragment:
        raise ValueError("has a ?query or #fragment, which a base URL cannot have")
    return value


def _check_query(value: str) -> str:
    # A long query is naturally written as a TOML multi-line string: its line breaks and tabs
    # are spacing, not content. Any other control character is still an error.
    return re.sub(r"\s*[\t\r\n]+\s*", " ", value).strip()


def _check_db(value: str) -> str:
    _no_control(value)
    if "://" in value:
        if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            raise ValueError("is neither a file path nor an SQLAlchemy URL")
    elif Path(value).expanduser().is_dir():
        raise ValueError("is a directory, not a database file")
    return value


def _check_api_key(value: str) -> str:
    _no_control(value)
    _no_spaces(value)
    return value


def _check_rules(value: str) -> str:
    _no_control(value)
    path = Path(value).expanduser()
    if path.is_dir():
        raise ValueError("is a directory, not a rules file")
    if not path.is_file():
        raise ValueError("does not exist")
    return value


_SECONDS = "seconds"
_Seconds = Annotated[float, _Number(_SECONDS, gt=0, le=3600)]
_Rate = Annotated[float, _Number("requests per second", gt=0, le=100)]
_Url = Annotated[str, _Text("an http(s) base URL with a host", "https://example.org/api",
                            _check_url)]
_Query = Annotated[str, _Text("the source's search expression", '"mesenchymal stem"',
                              _check_query)]


@dataclass(frozen=True)
class SourceSettings:
    """Per-source settings: base URL, query, politeness."""

    url: _Url
    query: _Query
    rate_per_second: _Rate
    enabled: bool = True
    page_size: Annotated[int, _Number("records per page", ge=1, le=1000)] = 1000
    # PubMed only: the most records one esearch date window may hold before it is split
    # (NCBI's esearch ceiling, 9,999 today; lower it if NCBI lowers theirs). 0 = default.
    max_window: Annotated[int, _Number(
        "records", ge=0, le=0, note=" (only PubMed has max_window; remove it)")] = 0


# One subclass per source, for the limits of each API. ``Settings.sources`` holds these.


@dataclass(frozen=True)
class CtgovSettings(SourceSettings):
    """ClinicalTrials.gov API v2: pageSize is capped at 1000 (API_NOTES 1.3)."""


@dataclass(frozen=True)
class PubmedSettings(SourceSettings):
    """E-utilities: retmax is capped at 10,000 for esearch and efetch; the esearch ceiling of
    one query is 9,999 records (API_NOTES 2)."""

    page_size: Annotated[int, _Number("records per request", ge=1, le=10_000)] = 500
    max_window: Annotated[int, _Number(
        "records", ge=0, le=9_999, note=" (0 = NCBI's ceiling, 9999)")] = 0


@dataclass(frozen=True)
class EuropepmcSettings(SourceSettings):
    """Europe PMC REST search: pageSize is 1..1000 (API_NOTES 3)."""


@dataclass(frozen=True)
class IsrctnSettings(SourceSettings):
    """ISRCTN XML API: no paging; ``page_size`` is the most records one ``lastEdited`` window
    may hold before it is split (dl_isrctn splits above 100; API_NOTES 4.3)."""

    page_size: Annotated[int, _Number("records per window", ge=1, le=1000)] = 100


@dataclass(frozen=True)
class EuctrSettings(SourceSettings):
    """EU Clinical Trials Register: HTML search pages of 20 trials (API_NOTES 5.2)."""

    page_size: Annotated[int, _Number("trials per page (the register sends 20)", ge=20,
                                      le=20)] = 20


@dataclass(frozen=True)
class CtisSettings(SourceSettings):
    """EU CTIS public API: POST search, 1-based pages of up to 100 (API_NOTES 6.2)."""

    page_size: Annotated[int, _Number("records per page", ge=1, le=100)] = 100


_SOURCE_CLASSES: dict[str, type[SourceSettings]] = {
    "ctgov": CtgovSettings, "pubmed": PubmedSettings, "europepmc": EuropepmcSettings,
    "isrctn": IsrctnSettings, "euctr": EuctrSettings, "ctis": CtisSettings,
}

DEFAULT_SOURCES: dict[str, SourceSettings] = {
    # No official CT.gov limit; robots.txt has Crawl-delay: 1 (API_NOTES 1.5).
    "ctgov": CtgovSettings("https://clinicaltrials.gov/api/v2", DEFAULT_CTGOV_QUERY, 1.0),
    # NCBI: 3 requests/s without an api_key, 10 with one (API_NOTES 2.6); raised in source().
    "pubmed": PubmedSettings(
        "https://eutils.ncbi.nlm.nih.gov/entrez/eutils", DEFAULT_PUBMED_QUERY, 3.0, page_size=500
    ),
    # No published limit; polite clients use 3-6 rps (API_NOTES 3.4).
    "europepmc": EuropepmcSettings(
        "https://www.ebi.ac.uk/europepmc/webservices/rest", DEFAULT_EUROPEPMC_QUERY, 3.0
    ),
    # ISRCTN asks for sequential requests; third parties run at 1 request/s (API_NOTES 4.5).
    "isrctn": IsrctnSettings("https://www.isrctn.com/api", DEFAULT_ISRCTN_QUERY, 1.0),
    # No published limits; the register is slow and frozen for new trials (API_NOTES 5).
    "euctr": EuctrSettings("https://www.clinicaltrialsregister.eu/ctr-search",
                           DEFAULT_EUCTR_QUERY, 0.5),
    # CTIS throttles with 403/429/503; keep to 1-2 requests/s (API_NOTES 6.4).
    "ctis": CtisSettings("https://euclinicaltrials.eu/ctis-public-api", DEFAULT_CTIS_QUERY, 1.0),
}


class _PerSource:
    """``Settings.sources``: exactly the known sources, each validated by its own class."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema as cs

        return cs.typed_dict_schema(
            {name: cs.typed_dict_field(handler.generate_schema(klass))
             for name, klass in _SOURCE_CLASSES.items()},
            extra_behavior="forbid",
        )


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know. Build it with ``load_settings``."""

    # pydantic reads this when load_settings validates (the class itself stays a dataclass).
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    db: Annotated[str, _Text("a database file path or SQLAlchemy URL",
                             "/srv/tracker/msc.sqlite", _check_db)]
    sources: Annotated[Mapping[str, SourceSettings], _PerSource()] = field(
        default_factory=lambda: dict(DEFAULT_SOURCES))
    contact_email: Annotated[str, _Text("an e-mail address", "me@example.org",
                                        _check_email)] | None = None
    pubmed_api_key: Annotated[str, _Text(
        "the API key of your NCBI account (letters and digits, no spaces)",
        "0123456789abcdef", _check_api_key)] | None = None
    timeout: _Seconds = DEFAULT_TIMEOUT
    # The most one request may take, connect to last byte (tracker.http); None: 5 x timeout.
    request_deadline: Annotated[float, _Number(_SECONDS, gt=0, le=86_400)] | None = None
    max_retries: Annotated[int, _Number("retries", ge=0, le=100)] = DEFAULT_MAX_RETRIES
    backoff_cap: Annotated[float, _Number(_SECONDS, ge=0, le=3600)] = 120.0
    overlap_days: Annotated[int, _Number("days", ge=0, le=3650)] = DEFAULT_OVERLAP_DAYS
    schedule: Annotated[str, _Text("a cron expression: minute hour day month weekday",
                                   DEFAULT_SCHEDULE)] = DEFAULT_SCHEDULE
    # seconds a second update waits for the first; 0 = exit at once
    lock_wait: Annotated[float, _Number(_SECONDS, ge=0, le=86_400)] = 0.0
    rules: Annotated[str, _Text("the path of a rules TOML file", "/etc/tracker/rules.toml",
                                _check_rules)] | None = None
    # A trial is "completed but unreported" this many months after its primary completion
    # with no results posted and no linked results paper (FDAAA's one-year floor).
    unreported_months: Annotated[int, _Number("months", ge=0, le=240)] = 12
    # Run the sources of an update side by side (each within its own host's rate limit, one
    # writer committing); false runs them one after another.
    concurrent_sources: bool = True
    config_file: str | None = None
    # Where each effective value came from: "db", "timeout", "ctgov.url", ... -> "default",
    # "config file /path", "environment TRACKER_X", "option --db". See describe_settings.
    origins: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def db_url(self) -> str:
        """The database as an SQLAlchemy URL (a bare path becomes ``sqlite:///path``)."""
        return db_url_from(self.db)

    def source(self, name: str) -> SourceSettings:
        """Settings of one source, with the PubMed rate raised when an API key is set."""
        try:
            s = self.sources[name]
        except KeyError:
            raise ConfigError(
                f"unknown source {name!r}; valid sources: {', '.join(sorted(self.sources))}"
            ) from None
        if name == "pubmed" and self.pubmed_api_key and s.rate_per_second == 3.0:
            s = dataclasses.replace(s, rate_per_second=10.0)
        return s

    def origin(self, key: str) -> str:
        """Where the effective value of ``key`` (``"timeout"``, ``"ctgov.url"``) came from."""
        return self.origins.get(key, "default")


def default_db_path() -> Path:
    """The SQLite file used when no database is configured (platformdirs user data dir)."""
    return Path(platformdirs.user_data_dir(APP_NAME)) / "tracker.sqlite"


def default_config_path() -> Path:
    """Where the config file is looked for when ``TRACKER_CONFIG`` is not set."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def db_url_from(value: str) -> str:
    """Turn a file path or an SQLAlchemy URL into an SQLAlchemy URL."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


# ----------------------------------------------------------------- the layers --------------

_TOP_KEYS = (
    "db", "contact_email", "pubmed_api_key", "timeout", "request_deadline", "max_retries",
    "backoff_cap",
    "overlap_days", "schedule", "lock_wait", "rules", "unreported_months",
    "concurrent_sources",
)
_SOURCE_KEYS = tuple(f.name for f in dataclasses.fields(SourceSettings))
_SECRET_KEYS = frozenset({"pubmed_api_key"})
# Environment variables: TRACKER_<KEY> for every top-level key, TRACKER_<SOURCE>_<KEY> for the
# sources, and NCBI's conventional variable as a fallback for the key.
_ENV_FALLBACKS = {"pubmed_api_key": "NCBI_API_KEY"}
# CLI flags whose name is not --<key>.
_OPTION_FLAGS = {"lock_wait": "--wait"}
_MAX_FILE_BYTES = 1 << 20

_Where = tuple[str, str]  # (kind, detail): ("file", "/p.toml"), ("env", "VAR"), ("option", "--db")


def _origin_text(where: _Where) -> str:
    kind, detail = where
    return {"file": f"config file {detail}", "env": f"environment {detail}",
            "option": f"option {detail}"}.get(kind, kind)


def _config_path(env: Mapping[str, str]) -> tuple[Path, _Where] | None:
    given = env.get("TRACKER_CONFIG")
    if given:
        return Path(given).expanduser(), ("env", "TRACKER_CONFIG")
    path = default_config_path()
    if os.path.lexists(path):
        return path, ("default location", "")
    return None


def _read_file(path: Path, how: _Where) -> dict[str, Any]:
    """The TOML document of the config file: a regular file, UTF-8, valid TOML, <= 1 MiB."""
    if how[0] == "env":
        named, fix = f"environment TRACKER_CONFIG={_show(str(path), False)}", "point it at"
    else:
        named, fix = f"config file {path}", "remove it, or set TRACKER_CONFIG to"
    if path.is_dir():
        raise ConfigError(f"{named} is a directory, not a config file; {fix} a TOML file, "
                          f"e.g. {path / 'config.toml'}")
    if not path.exists():
        raise ConfigError(f"{named}: the config file does not exist; fix TRACKER_CONFIG or "
                          "create the file")
    if not path.is_file():
        raise ConfigError(f"{named} is not a regular file; {fix} a TOML file")
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc}); "
                          "check its permissions") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ConfigError(f"config file {path} is over 1 MiB, so it is not a tracker config "
                          "file; check TRACKER_CONFIG")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} "
                          f"on line {line}); save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _unknown(where: str, key: str, valid: tuple[str, ...], table: str = "") -> ConfigError:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    place = f" in [{table}]" if table else ""
    return ConfigError(f"{where}: unknown key {key!r}{place}{hint}; valid keys: "
                       f"{', '.join(sorted(valid))}")


def _file_layer(doc: Mapping[str, Any], path: Path) -> dict[str, tuple[Any, _Where]]:
    """``key or source.key`` -> (value, where) for every key of the TOML document."""
    where = f"config file {path}"
    out: dict[str, tuple[Any, _Where]] = {}
    for key, value in doc.items():
        if key in DEFAULT_SOURCES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: {key} must be a table: write [{key}] on its own "
                                  "line, then its keys (url, query, ...) below it")
            for sub, subvalue in value.items():
                if sub not in _SOURCE_KEYS:
                    raise _unknown(where, sub, _SOURCE_KEYS, key)
                out[f"{key}.{sub}"] = (subvalue, ("file", str(path)))
        elif key in _TOP_KEYS:
            out[key] = (value, ("file", str(path)))
        else:
            raise _unknown(where, key, _TOP_KEYS + tuple(DEFAULT_SOURCES))
    return out


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[Any, _Where]]:
    out: dict[str, tuple[Any, _Where]] = {}
    for key in _TOP_KEYS:
        for var in (f"TRACKER_{key.upper()}", _ENV_FALLBACKS.get(key)):
            if var and env.get(var):  # an empty variable counts as unset
                out[key] = (env[var], ("env", var))
                break
    for name in DEFAULT_SOURCES:
        for key in _SOURCE_KEYS:
            var = f"TRACKER_{name.upper()}_{key.upper()}"
            if env.get(var):
                out[f"{name}.{key}"] = (env[var], ("env", var))
    return out


def _option_layer(overrides: Mapping[str, Any]) -> dict[str, tuple[Any, _Where]]:
    out: dict[str, tuple[Any, _Where]] = {}
    for key, value in overrides.items():
        if value is None:  # "not given"
            continue
        if key not in _TOP_KEYS:
            raise _unknown("option", key, _TOP_KEYS)
        flag = _OPTION_FLAGS.get(key, "--" + key.replace("_", "-"))
        out[key] = (value, ("option", flag))
    return out


@functools.cache
def _validator() -> Any:
    """The pydantic validator of Settings (built once per process, on first use)."""
    from pydantic import TypeAdapter

    return TypeAdapter(Settings)


def _build(merged: Mapping[str, tuple[Any, _Where]], extra: Mapping[str, Any],
           origins: dict[str, str]) -> Settings:
    """Validate the merged layers; a failure names the value's layer (one line)."""
    from pydantic import ValidationError

    top: dict[str, Any] = {}
    sources: dict[str, dict[str, Any]] = {
        name: {f.name: getattr(src, f.name) for f in dataclasses.fields(src)}
        for name, src in DEFAULT_SOURCES.items()
    }
    for key, (value, _) in merged.items():
        name, dot, sub = key.partition(".")
        if dot:
            sources[name][sub] = value
        else:
            top[key] = value
    origins = origins | {key: _origin_text(where) for key, (_, where) in merged.items()}
    try:
        return _validator().validate_python(
            {"db": str(default_db_path()), **top, "sources": sources, **extra,
             "origins": origins})
    except ValidationError as exc:
        raise _explain(exc.errors()[0], merged) from None


# ----------------------------------------------------------------- error messages ----------

_PROBLEMS = {
    "string_type": "is not a string",
    "int_type": "is not a whole number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
}


def _problem(err: Mapping[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind in ("greater_than", "greater_than_equal", "less_than_equal"):
        bound = _fmt(next(iter(ctx.values())))
        return {"greater_than": f"is not more than {bound}",
                "greater_than_equal": f"is less than {bound}",
                "less_than_equal": f"is more than {bound}"}[kind]
    return _PROBLEMS.get(kind, str(err["msg"]).lower())


def _field_rule(key: str) -> tuple[str, Any]:
    """(what a good value is, an example of one) for ``key`` or ``source.key``."""
    import typing

    name, dot, sub = key.partition(".")
    klass: type = _SOURCE_CLASSES[name] if dot else Settings
    fname = sub if dot else key
    hint = typing.get_type_hints(klass, include_extras=True)[fname]
    args = typing.get_args(hint)
    if args and type(None) in args:  # Optional[Annotated[...]]
        hint = next(a for a in args if a is not type(None))
    kind = typing.get_args(hint)[0] if hasattr(hint, "__metadata__") else hint
    marker = next((m for m in getattr(hint, "__metadata__", ())
                   if isinstance(m, (_Number, _Text))), None)
    default = next((f.default for f in dataclasses.fields(klass) if f.name == fname), None)
    if dot:
        default = getattr(DEFAULT_SOURCES[name], fname)
    if isinstance(marker, _Text):
        return marker.describe(kind), (default if dot and fname == "url" else marker.example)
    if isinstance(marker, _Number):
        return marker.describe(kind), default if default is not None else _fmt(
            marker.le if marker.le is not None and marker.le <= 3600 else 300)
    return "true or false", default if isinstance(default, bool) else True


def _show(value: Any, secret: bool) -> str:
    import json

    if secret:
        return "***"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _example(where: _Where, key: str, example: Any) -> str:
    kind, detail = where
    name, dot, sub = key.partition(".")
    if isinstance(example, float):
        example = float(_fmt(example)) if kind == "file" else _fmt(example)
    if kind == "file":
        shown = _show(example, False)
        return f"{sub} = {shown} under [{name}]" if dot else f"{key} = {shown}"
    if isinstance(example, bool):
        example = str(example).lower()
    if kind == "env":
        return f"{detail}={example}"
    return f"{detail} {example}"


def _explain(err: Mapping[str, Any], merged: Mapping[str, tuple[Any, _Where]]) -> ConfigError:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc[1:3]) if loc[:1] == ["sources"] else (loc[0] if loc else "")
    if key not in merged:  # cannot happen: every default is valid
        return ConfigError(f"settings: {'.'.join(loc)} {_problem(err)}")
    value, where = merged[key]
    shown = _show(value, key in _SECRET_KEYS)
    name, dot, sub = key.partition(".")
    if where[0] == "file":
        setting = f"[{name}] {sub}" if dot else key
        head = f"config file {where[1]}: {setting} = {shown}"
    elif where[0] == "env":
        head = f"environment {where[1]}={shown}"
    else:
        head = f"option {where[1]} {shown}"
    rule, example = _field_rule(key)
    quote = " in quotes" if err["type"] == "string_type" and where[0] == "file" else ""
    return ConfigError(f"{head} {_problem(err)}; write {rule}{quote}, "
                       f"e.g. {_example(where, key, example)}")


# ----------------------------------------------------------------- entry points ------------


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, the config file, the environment and ``overrides``.

    ``overrides`` holds CLI flag values (``None`` means "not given"). Raises ConfigError, one
    line naming the setting, the layer it came from and what to write instead, for an
    unreadable file, an unknown key or a bad value. Each layer is validated as it is added, so
    a bad value in the file is reported even when the environment overrides it.
    """
    env = os.environ if env is None else env
    merged: dict[str, tuple[Any, _Where]] = {}
    extra: dict[str, Any] = {}
    origins: dict[str, str] = {}
    found = _config_path(env)
    layers: list[dict[str, tuple[Any, _Where]]] = []
    if found is not None:
        path, how = found
        layers.append(_file_layer(_read_file(path, how), path))
        extra["config_file"] = str(path)
        origins["config_file"] = ("environment TRACKER_CONFIG" if how[0] == "env"
                                  else "default location")
    layers += [_env_layer(env), _option_layer(overrides or {})]
    for layer in layers:
        merged.update(layer)
        settings = _build(merged, extra, origins)
    return settings


_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^/@\s]*@")


def _mask_url(value: str) -> str:
    """``scheme://user:***@host/...``: a password in a database or proxy URL is a secret."""
    return _URL_PASSWORD.sub(r"\1***@", value)


def describe_settings(settings: Settings) -> dict[str, Any]:
    """The effective settings, secrets as ``***``, and where each came from.

    The values stand where they always stood (``data["db"]``, ``data["sources"]["ctgov"]``);
    ``data["from"]`` maps each of them (``"db"``, ``"ctgov.rate_per_second"``) to its origin:
    ``"default"``, ``"config file /path"``, ``"environment TRACKER_X"`` or ``"option --db"``.
    """
    data: dict[str, Any] = {
        "config_file": settings.config_file or f"{default_config_path()} (not present)",
    }
    origins: dict[str, str] = {
        "config_file": settings.origins.get("config_file", "default location"),
    }
    for key in _TOP_KEYS:
        value = getattr(settings, key)
        if key in _SECRET_KEYS and value is not None:
            value = "***"
        elif key == "db":
            value = _mask_url(value)
        data[key] = value
        origins[key] = settings.origin(key)
    data["sources"] = {}
    for name, stored in settings.sources.items():
        effective = settings.source(name)
        values = {f.name: getattr(effective, f.name) for f in dataclasses.fields(effective)}
        values["url"] = _mask_url(values["url"])
        data["sources"][name] = values
        for key in values:
            origins[f"{name}.{key}"] = settings.origin(f"{name}.{key}")
        if effective.rate_per_second != stored.rate_per_second:
            origins[f"{name}.rate_per_second"] += (
                f" ({_fmt(effective.rate_per_second)}/s because pubmed_api_key is set)")
    data["from"] = origins
    return data
