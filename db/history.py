"""Field-level history of studies: which normalised fields are diffed, and how.

Every version of a study's raw record is kept (``study`` holds the current one, ``study_version``
every earlier one, compressed), so any field a parser can read can be reconstructed for any
version, by re-parsing. Change events (``study_change``) are derived field by field between two
consecutive versions when the newer one is stored: one event per field in ``FIELDS`` whose
value differs, with the registry's own update date of the newer version beside the time the
tracker saw it. A field added to ``FIELDS`` later can be back-filled from the stored versions
(``events_between``) without refetching anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from db.records import StudyRecord


@dataclass(frozen=True, slots=True)
class TrackedField:
    """A diffable field: its event name, its label for people, and how to read it."""

    name: str
    label: str
    read: Callable[[StudyRecord], Any]
    is_list: bool = False


def _interventions(rec: StudyRecord) -> list[str]:
    return [f"{iv.type}: {iv.name}" if iv.type else iv.name for iv in rec.interventions]


def _arms(rec: StudyRecord) -> list[str]:
    out = []
    for arm in rec.arms:
        head = f"{arm.label} ({arm.type})" if arm.type else arm.label
        out.append(f"{head}: {', '.join(arm.interventions)}" if arm.interventions else head)
    return out


def _attr(name: str) -> Callable[[StudyRecord], Any]:
    return lambda rec: getattr(rec, name)


# In the order people read a registration's life: status first, then design, then dates.
FIELDS: tuple[TrackedField, ...] = (
    TrackedField("status", "Status", _attr("status")),
    TrackedField("why_stopped", "Why stopped", _attr("why_stopped")),
    TrackedField("phase", "Phase", _attr("phase")),
    TrackedField("enrollment", "Enrollment", _attr("enrollment")),
    TrackedField("enrollment_type", "Enrollment type", _attr("enrollment_type")),
    TrackedField("start_date", "Start date", _attr("start_date")),
    TrackedField("primary_completion_date", "Primary completion date",
                 _attr("primary_completion_date")),
    TrackedField("completion_date", "Completion date", _attr("completion_date")),
    TrackedField("has_results", "Results posted", _attr("has_results")),
    TrackedField("results_first_posted", "Results first posted", _attr("results_first_posted")),
    TrackedField("conditions", "Conditions", _attr("conditions"), is_list=True),
    TrackedField("interventions", "Interventions", _interventions, is_list=True),
    TrackedField("arms", "Arms", _arms, is_list=True),
    TrackedField("primary_outcomes", "Primary outcomes", _attr("primary_outcomes"),
                 is_list=True),
    TrackedField("sponsor", "Sponsor", _attr("sponsor")),
    TrackedField("countries", "Countries", _attr("countries"), is_list=True),
    TrackedField("title", "Title", _attr("title")),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
BY_NAME: dict[str, TrackedField] = {f.name: f for f in FIELDS}


def as_text(value: Any) -> str | None:
    """A field value as stored in ``study_change``: lists as JSON arrays, booleans as
    true/false, dates as ISO, None as NULL."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return orjson.dumps(list(value)).decode()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def diff(old: StudyRecord, new: StudyRecord) -> list[tuple[str, str | None, str | None]]:
    """(field, old text, new text) for every tracked field whose value differs."""
    out = []
    for f in FIELDS:
        a, b = f.read(old), f.read(new)
        if f.is_list:
            a, b = list(a or []), list(b or [])
        if a != b:
            out.append((f.name, as_text(a), as_text(b)))
    return out


def from_text(field: str, text: str | None) -> Any:
    """Inverse of ``as_text`` for a tracked field (lists come back as lists)."""
    if text is None:
        return None
    spec = BY_NAME.get(field)
    if spec is not None and spec.is_list:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return [text]
        return value if isinstance(value, list) else [value]
    return text


__all__ = ["BY_NAME", "FIELDS", "FIELD_NAMES", "TrackedField", "as_text", "diff", "from_text"]
