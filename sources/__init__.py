"""The public sources the tracker reads, one module each, behind ``sources.base.Source``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracker.config import Settings
from tracker.errors import ConfigError


def _ctgov(settings: Settings) -> Any:
    from sources.clinicaltrials_gov import ClinicalTrialsGov

    return ClinicalTrialsGov(settings.source("ctgov"))


def _pubmed(settings: Settings) -> Any:
    from sources.pubmed import PubMed

    src = settings.source("pubmed")
    return PubMed(src, email=settings.contact_email, api_key=settings.pubmed_api_key,
                  **({"ceiling": src.max_window} if src.max_window else {}))


def _europepmc(settings: Settings) -> Any:
    from sources.europepmc import EuropePMC

    return EuropePMC(settings.source("europepmc"), email=settings.contact_email)


# name -> factory(settings) -> Source. The order is the order ``tracker update`` runs them in.
REGISTRY: dict[str, Callable[[Settings], Any]] = {
    "ctgov": _ctgov,
    "pubmed": _pubmed,
    "europepmc": _europepmc,
}


def _ctgov_raw(raw: bytes) -> Any:
    from sources.clinicaltrials_gov import parse_study

    return parse_study(raw)


def _pubmed_raw(raw: bytes) -> Any:
    from sources.pubmed import item_from_bytes, parse_item

    return parse_item(item_from_bytes(raw))


def _europepmc_raw(raw: bytes) -> Any:
    import orjson

    from sources.europepmc import parse_result

    return parse_result(orjson.loads(raw))


# name -> parse(stored raw bytes) -> normalised record: how a stored raw record (current or an
# earlier version) is read again without the network, by ``tracker classify`` and the history.
RAW_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "ctgov": _ctgov_raw,
    "pubmed": _pubmed_raw,
    "europepmc": _europepmc_raw,
}


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
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown source {name!r}; valid sources: {', '.join(REGISTRY)}"
        ) from None
    return factory(settings)
