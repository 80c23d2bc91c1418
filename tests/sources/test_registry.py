"""The one registry of sources (sources.SOURCES): every source keeps the typed contract of
sources.base, and declares only capabilities the pipeline knows, each one implemented."""

from __future__ import annotations

import pytest

from sources import SOURCES, source_class
from sources.base import CAPABILITIES, FETCH_IDS, FILE_IMPORT, FINGERPRINT, BaseSource


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_keeps_the_contract(name: str) -> None:
    cls = source_class(name)
    assert issubclass(cls, BaseSource)
    assert cls.name == name and cls.kind in ("study", "publication") and cls.registry
    assert cls.capabilities <= CAPABILITIES, cls.capabilities - CAPABILITIES
    # a declared capability is implemented, not BaseSource's default
    if FETCH_IDS in cls.capabilities:
        assert cls.fetch_ids is not BaseSource.fetch_ids
    if FINGERPRINT in cls.capabilities:
        assert cls.fingerprint is not BaseSource.fingerprint
    if FILE_IMPORT in cls.capabilities:
        assert callable(getattr(cls, "records_of_file", None))
    for method in ("fetch", "parse", "record_id", "item_bytes", "item_from_bytes", "count",
                   "parse_raw"):
        assert callable(getattr(cls, method, None)), method
