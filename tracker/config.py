"""Settings: one frozen object, built from defaults < TOML file < ``TRACKER_*`` env < CLI flags.

The config file is ``$TRACKER_CONFIG`` if set, else ``config.toml`` in the platformdirs user
config dir (``tracker config-path`` prints it). Every key is optional; unknown keys are an error
so that a typo does not silently fall back to a default. Example::

    db = "/srv/tracker/msc.sqlite"          # or an SQLAlchemy URL: postgresql+psycopg://...
    contact_email = "me@example.org"
    overlap_days = 3

    [ctgov]
    url = "https://clinicaltrials.gov/api/v2"
    query = '"mesenchymal stem" OR "mesenchymal stromal"'
    rate_per_second = 1.0

Importing this module reads nothing; ``load_settings`` does the reading.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# Europe PMC Lucene-like syntax; SRC:PPR preprints are included on purpose.
DEFAULT_EUROPEPMC_QUERY = (
    '("mesenchymal stem cell" OR "mesenchymal stem cells" OR "mesenchymal stromal cell" '
    'OR "mesenchymal stromal cells" OR "stromal vascular fraction" '
    'OR "bone marrow aspirate concentrate")'
)


@dataclass(frozen=True)
class SourceSettings:
    """Per-source settings: base URL, query, politeness."""

    url: str
    query: str
    rate_per_second: float
    enabled: bool = True
    page_size: int = 1000
    # PubMed only: the most records one esearch date window may hold before it is split
    # (NCBI's esearch ceiling, 9,999 today; lower it if NCBI lowers theirs). 0 = default.
    max_window: int = 0


DEFAULT_SOURCES: dict[str, SourceSettings] = {
    # No official CT.gov limit; robots.txt has Crawl-delay: 1 (API_NOTES 1.5).
    "ctgov": SourceSettings("https://clinicaltrials.gov/api/v2", DEFAULT_CTGOV_QUERY, 1.0),
    # NCBI: 3 requests/s without an api_key, 10 with one (API_NOTES 2.6); raised in effective().
    "pubmed": SourceSettings(
        "https://eutils.ncbi.nlm.nih.gov/entrez/eutils", DEFAULT_PUBMED_QUERY, 3.0, page_size=500
    ),
    # No published limit; polite clients use 3-6 rps (API_NOTES 3.4).
    "europepmc": SourceSettings(
        "https://www.ebi.ac.uk/europepmc/webservices/rest", DEFAULT_EUROPEPMC_QUERY, 3.0
    ),
}

DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_OVERLAP_DAYS = 3
DEFAULT_SCHEDULE = "30 2 * * *"  # cron: 02:30 local time every night


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know. Build it with ``load_settings``."""

    db: str
    sources: Mapping[str, SourceSettings] = field(default_factory=lambda: dict(DEFAULT_SOURCES))
    contact_email: str | None = None
    pubmed_api_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_cap: float = 120.0
    overlap_days: int = DEFAULT_OVERLAP_DAYS
    schedule: str = DEFAULT_SCHEDULE
    lock_wait: float = 0.0  # seconds a second update waits for the first; 0 = exit at once
    rules: str | None = None  # path to a custom classification rules file
    # A trial is "completed but unreported" this many months after its primary completion
    # with no results posted and no linked results paper (FDAAA's one-year floor).
    unreported_months: int = 12
    config_file: str | None = None

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


_TOP_KEYS = {
    "db", "contact_email", "pubmed_api_key", "timeout", "max_retries", "backoff_cap",
    "overlap_days", "schedule", "lock_wait", "rules", "unreported_months",
}
_SOURCE_KEYS = {f.name for f in dataclasses.fields(SourceSettings)}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix TRACKER_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _env_values(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = {
        "TRACKER_DB": "db",
        "TRACKER_CONTACT_EMAIL": "contact_email",
        "TRACKER_PUBMED_API_KEY": "pubmed_api_key",
        "NCBI_API_KEY": "pubmed_api_key",  # secrets may fall back to the conventional variable
        "TRACKER_TIMEOUT": "timeout",
        "TRACKER_MAX_RETRIES": "max_retries",
        "TRACKER_OVERLAP_DAYS": "overlap_days",
        "TRACKER_SCHEDULE": "schedule",
        "TRACKER_LOCK_WAIT": "lock_wait",
        "TRACKER_RULES": "rules",
        "TRACKER_UNREPORTED_MONTHS": "unreported_months",
    }
    for var, key in simple.items():
        if env.get(var) and key not in out:
            out[key] = env[var]
    for name in DEFAULT_SOURCES:
        prefix = f"TRACKER_{name.upper()}_"
        for key in ("url", "query", "rate_per_second", "enabled", "page_size", "max_window"):
            value = env.get(prefix + key.upper())
            if value:
                out.setdefault(name, {})[key] = value
    return out


def _coerce(key: str, value: Any, kind: type, where: str) -> Any:
    if kind is bool and isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: {key} must be true or false, not {value!r}")
    try:
        result = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {value!r}") from None
    if kind in (int, float) and result < 0:
        raise ConfigError(f"{where}: {key} must not be negative")
    return result


_TOP_TYPES: dict[str, type] = {
    "db": str, "contact_email": str, "pubmed_api_key": str, "timeout": float, "max_retries": int,
    "backoff_cap": float, "overlap_days": int, "schedule": str, "lock_wait": float, "rules": str,
    "unreported_months": int,
}
_SOURCE_TYPES: dict[str, type] = {
    "url": str, "query": str, "rate_per_second": float, "enabled": bool, "page_size": int,
    "max_window": int,
}


def _apply(values: dict[str, Any], layer: Mapping[str, Any], where: str) -> None:
    for key, value in layer.items():
        if key in DEFAULT_SOURCES:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{key}] must be a table")
            unknown = set(value) - _SOURCE_KEYS
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {', '.join(sorted(unknown))} in [{key}]; "
                    f"valid: {', '.join(sorted(_SOURCE_KEYS))}"
                )
            src = values["sources"][key]
            changes = {k: _coerce(k, v, _SOURCE_TYPES[k], where) for k, v in value.items()}
            values["sources"][key] = dataclasses.replace(src, **changes)
        elif key in _TOP_KEYS:
            if value is not None:
                values[key] = _coerce(key, value, _TOP_TYPES[key], where)
        else:
            raise ConfigError(
                f"{where}: unknown key {key!r}; valid keys: "
                f"{', '.join(sorted(_TOP_KEYS | set(DEFAULT_SOURCES)))}"
            )


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, the config file, the environment and ``overrides``.

    ``overrides`` holds CLI flag values (``None`` means "not given"). Raises ConfigError for an
    unreadable file, an unknown key or a badly typed value.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {"db": str(default_db_path()), "sources": dict(DEFAULT_SOURCES)}
    config_path = env.get("TRACKER_CONFIG")
    path = Path(config_path).expanduser() if config_path else default_config_path()
    if config_path or path.exists():
        _apply(values, _read_file(path), str(path))
        values["config_file"] = str(path)
    _apply(values, _env_values(env), "environment")
    _apply(values, {k: v for k, v in (overrides or {}).items() if v is not None}, "option")
    for name, src in values["sources"].items():
        if not src.url.startswith(("http://", "https://")):
            raise ConfigError(f"{name} url must start with http:// or https://, not {src.url!r}")
        if src.rate_per_second <= 0:
            raise ConfigError(f"{name} rate_per_second must be positive")
    return Settings(**values)
