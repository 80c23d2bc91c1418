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


def get_source(name: str, settings: Settings) -> Any:
    """Build the source called ``name``; raises ConfigError listing the valid names."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown source {name!r}; valid sources: {', '.join(REGISTRY)}"
        ) from None
    return factory(settings)
