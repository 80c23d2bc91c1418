"""The public sources the tracker reads, one module each, behind ``sources.base.Source``.

Adding a source is one module (a ``BaseSource`` subclass) and one line in :data:`SOURCES`.
Everything else is derived from that line: the sources ``tracker update`` runs and their
order (:data:`REGISTRY`), the parsers of stored raw records that ``tracker classify``, the
history and the search index use (:data:`RAW_PARSERS`, by the name a stored record carries).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tracker.config import Settings
from tracker.errors import ConfigError

# name -> "module:Class". The order is the order ``tracker update`` runs them in.
SOURCES: dict[str, str] = {
    "ctgov": "sources.clinicaltrials_gov:ClinicalTrialsGov",
    "pubmed": "sources.pubmed:PubMed",
    "europepmc": "sources.europepmc:EuropePMC",
    "isrctn": "sources.isrctn:ISRCTN",
    "euctr": "sources.euctr:EUCTR",
    "ctis": "sources.ctis:CTIS",
    "ictrp": "sources.ictrp:ICTRP",
}


def fetched() -> list[str]:
    """The sources ``tracker update`` fetches (not the file imports), in run order."""
    from sources.base import FILE_IMPORT

    return [n for n in SOURCES if FILE_IMPORT not in source_class(n).capabilities]


def source_class(name: str) -> Any:
    """The class of source ``name`` (imported on first use); ConfigError for another name."""
    try:
        module, cls = SOURCES[name].split(":")
    except KeyError:
        raise ConfigError(
            f"unknown source {name!r}; valid sources: {', '.join(SOURCES)}") from None
    return getattr(importlib.import_module(module), cls)


class _Factories(Mapping[str, Callable[[Settings], Any]]):
    """name -> factory(settings) -> Source, in run order (``tracker update``, ``status``)."""

    def __getitem__(self, name: str) -> Callable[[Settings], Any]:
        if name not in SOURCES:
            raise KeyError(name)
        return lambda settings: source_class(name).from_settings(settings)

    def __iter__(self) -> Iterator[str]:
        return iter(SOURCES)

    def __len__(self) -> int:
        return len(SOURCES)


class _RawParsers(Mapping[str, Callable[[bytes], Any]]):
    """name -> parse(stored raw bytes) -> normalised record: how a stored raw record (current
    or an earlier version) is read again without the network."""

    def __getitem__(self, name: str) -> Callable[[bytes], Any]:
        if name not in SOURCES:
            raise KeyError(name)
        return source_class(name).parse_raw

    def __iter__(self) -> Iterator[str]:
        return iter(SOURCES)

    def __len__(self) -> int:
        return len(SOURCES)


REGISTRY: Mapping[str, Callable[[Settings], Any]] = _Factories()
RAW_PARSERS: Mapping[str, Callable[[bytes], Any]] = _RawParsers()


def parse_raw(name: str, raw: bytes) -> Any:
    """Normalise a stored raw record of source (registry) ``name``; raises ParseError when it
    does not parse and ConfigError for a name no source has."""
    try:
        parser = RAW_PARSERS[name]
    except KeyError:
        raise ConfigError(f"no parser for stored records of {name!r}") from None
    return parser(raw)


def get_source(name: str, settings: Settings) -> Any:
    """Build the source called ``name``; raises ConfigError listing the valid names."""
    return source_class(name).from_settings(settings)
