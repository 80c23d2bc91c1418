"""``tracker import SOURCE FILE``: a file read through the same pipeline as a fetch.

A file import (today the WHO ICTRP search portal's XML export, which has no free API) is one
more source run inside one update: its records are parsed, classified, stored a page at a
time, quarantined when broken and kept with their history exactly as fetched ones are, and
the update is logged (``tracker status``, ``--last-run``). A later import of a newer export
updates the same registrations.

ICTRP re-aggregates registries that have their own source here (CT.gov, ISRCTN, the EU
registers): its copy of such a record is stored as an ``ictrp`` registration with the same
id, which the trial grouping joins to the registry's own record (never over it). Records of
the other registries (ChiCTR, IRCT, jRCT, CTRI, CRIS, ANZCTR, DRKS, ...) become registrations
of their own registry with ICTRP as their source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from sources import SOURCES, source_class
from sources.base import Page, Window
from tracker.classify import load_rules
from tracker.config import Settings
from tracker.errors import ConfigError
from tracker.pipeline import RunSummary, run_source, settled_heap
from tracker.update import finish_update, start_update, update_outcome

IMPORTABLE = ("ictrp",)


class FileSource:
    """A source whose pages come from a file (``records_of_file``), or from a folder of
    pages saved by ``tracker update --save-raw`` (``saved``), instead of its API."""

    def __init__(self, source: Any, path: Path, saved: bool = False) -> None:
        self._source = source
        self._path = path
        self._saved = saved
        self.name = source.name
        self.kind = source.kind
        self.registry = source.registry
        self.capabilities = source.capabilities
        self.batch_size = source.batch_size
        self.retry_statuses = source.retry_statuses

    def fetch(self, http: Any, window: Window) -> Iterator[Page]:
        if self._saved:
            from tracker.archive import read_pages

            return read_pages(self._path, self._source.item_from_bytes)
        return self._source.records_of_file(self._path)

    def parse(self, item: Any) -> Any:
        rec = self._source.parse(item)
        if self._saved:
            return rec  # the source's own pages: its own records
        if rec.registry in SOURCES and rec.registry != self.name:
            # A registry with a source of its own: ICTRP's copy is a registration beside it.
            rec = dataclasses.replace(rec, registry=self.name, source=self.name)
        return rec

    def record_id(self, item: Any) -> str | None:
        return self._source.record_id(item)

    def item_bytes(self, item: Any) -> bytes:
        return self._source.item_bytes(item)

    def item_from_bytes(self, raw: bytes) -> Any:
        return self._source.item_from_bytes(raw)

    def fingerprint(self, item: Any) -> tuple[str, str] | None:
        return None

    def fetch_ids(self, http: Any, ids: list[str]) -> Iterator[Page]:
        raise NotImplementedError(f"{self.name} records come from files")

    def count(self, http: Any, window: Window) -> Any:
        return self._source.count(http, window)


def run_archive(engine: Engine, settings: Settings, path: str) -> list[RunSummary]:
    """Read a folder written by ``tracker update --save-raw`` back, every source in it, as
    one update: its pages go through the same pipeline, quarantine and history as a fetch."""
    from tracker.archive import archived_sources

    root = Path(path)
    names = archived_sources(root)
    if not names:
        raise ConfigError(f"{path!r} holds no saved pages (DIR/<source>/*.jsonl, as tracker "
                          "update --save-raw DIR writes them)")
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ConfigError(f"{path!r} holds pages of {unknown[0]!r}, which is not a source; "
                          f"sources: {', '.join(SOURCES)}")
    rules = load_rules(settings.rules)
    update_id = start_update(engine, names, full=True)
    summaries: list[RunSummary] = []
    outcome, error = "failed", "stopped before the saved pages were read"
    try:
        for name in names:
            source = FileSource(source_class(name).from_settings(settings), root / name,
                                saved=True)
            with settled_heap():
                summaries.append(run_source(engine, source, None, full=True, rules=rules,
                                            update_id=update_id))
        outcome, error = update_outcome(summaries)
    except KeyboardInterrupt:
        outcome, error = "failed", "interrupted before the saved pages were read"
        raise
    finally:
        finish_update(engine, update_id, outcome, error)
    return summaries


def run_import(engine: Engine, settings: Settings, name: str, path: str) -> RunSummary:
    """Import ``path`` as source ``name``, as one update; returns the source run's summary."""
    if name not in IMPORTABLE:
        raise ConfigError(f"tracker import reads {', '.join(IMPORTABLE)} files; {name!r} is "
                          "fetched by tracker update")
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{name}: {path!r} is not a file; give the path of an export "
                          "(e.g. the XML of trialsearch.who.int's 'Export Results to XML')")
    source = FileSource(source_class(name).from_settings(settings), file)
    update_id = start_update(engine, [name], full=True)
    outcome, error = "failed", "stopped before the file was read"
    try:
        with settled_heap():
            summary = run_source(engine, source, None, full=True,
                                 rules=load_rules(settings.rules), update_id=update_id)
        outcome, error = update_outcome([summary])
    except KeyboardInterrupt:
        outcome, error = "failed", "interrupted before the file was read"
        raise
    finally:
        finish_update(engine, update_id, outcome, error)
    return summary
