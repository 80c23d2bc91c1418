"""Storing classification labels: columns on the record row plus one ``record_label`` row per
label for filtering. ``labels`` objects are duck-typed (``tracker.classify.Labels``): the
database layer does not import the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.engine import Connection

from db.bulk import execute_many
from db.models import RecordLabel

LABEL = RecordLabel.__table__
FAMILIES = (("condition_group", "condition_groups"), ("cell_source", "cell_sources"),
            ("origin", "origins"), ("product", "products"))


def label_values(labels: Any, fingerprint: str | None) -> dict[str, Any]:
    """The label columns of a study or publication row."""
    if labels is None:
        return {}
    return {
        "msc_relevant": labels.msc_relevant,
        "msc_role": labels.role,
        "minimally_manipulated": labels.minimally_manipulated,
        "relevance_reason": labels.reason,
        "condition_groups": list(labels.condition_groups),
        "cell_sources": list(labels.cell_sources),
        "origins": list(labels.origins),
        "products": list(labels.products),
        "evidence": [
            {"family": e.family, "label": e.label, "field": e.field, "matched": e.matched}
            for e in labels.evidence
        ],
        "rules_fingerprint": fingerprint,
    }


def replace_label_rows(
    conn: Connection, kind: str, labelled: Sequence[tuple[int, Any]], *, replace: bool = True
) -> None:
    """Write the ``record_label`` rows of ``(record_id, labels)`` pairs, replacing old ones."""
    if not labelled:
        return
    fk = "study_id" if kind == "study" else "publication_id"
    if replace:
        ids = [rid for rid, _ in labelled]
        for i in range(0, len(ids), 500):
            conn.execute(delete(LABEL).where(LABEL.c[fk].in_(ids[i : i + 500])))
    other = "publication_id" if kind == "study" else "study_id"
    rows = [
        {"kind": kind, "record_id": rid, fk: rid, other: None, "family": family,
         "label": label}
        for rid, labels in labelled if labels is not None
        for family, attr in FAMILIES
        for label in getattr(labels, attr)
    ]
    if rows:
        execute_many(conn, LABEL.insert(), rows)


def store_labels(
    conn: Connection, table: Any, kind: str, labelled: Sequence[tuple[int, Any]],
    fingerprint: str | None,
) -> None:
    """Update label columns and rows of already stored records (``tracker classify``)."""
    for rid, labels in labelled:
        conn.execute(update(table).where(table.c.id == rid).values(
            **label_values(labels, fingerprint)))
    replace_label_rows(conn, kind, labelled)
