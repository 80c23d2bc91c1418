"""Upsert of publications: one paper, one row, however many listings report it.

A listing's record (``PublicationRecord``) is stored as a ``publication_source`` row keyed on
(source, source_id) with its raw record and content hash; an unchanged hash is skipped. New
records are matched to an existing publication by PMID, then PMCID, then DOI (case-insensitive),
then by a preprint's declared published version (and the reverse), else a new publication is
created. PubMed is authoritative for descriptive fields; other sources fill what is missing.
Trial ids the paper declares (DataBankList) or mentions (title, abstract) are stored in
``publication_trial`` with how they were found. The full-text index (``db.search``) follows
new papers and changed text; a deleted citation leaves it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from db import search
from db.bulk import execute_many
from db.labels import label_values, replace_label_rows
from db.models import Publication, PublicationSource, PublicationSourceVersion, PublicationTrial
from db.records import PublicationRecord
from db.upsert import UpsertResult, _chunks, _insert, compress
from tracker.taxonomy import publication_phase
from tracker.trial_ids import extract_trial_ids, normalize_accession

PUB = Publication.__table__
SRC = PublicationSource.__table__
LINK = PublicationTrial.__table__

AUTHORITATIVE = "pubmed"
DESCRIPTIVE = ("title", "abstract", "journal", "pub_date", "pub_year", "publication_types",
               "mesh_terms", "keywords", "authors", "date_revised", "url", "phase")
INDEXED = {"title", "abstract", "keywords", "mesh_terms"}  # the columns db.search indexes
TRIAL_TYPES = {
    "clinical trial", "clinical trial, phase i", "clinical trial, phase ii",
    "clinical trial, phase iii", "clinical trial, phase iv", "randomized controlled trial",
    "controlled clinical trial", "pragmatic clinical trial", "equivalence trial",
}


_LABEL_DEFAULTS: dict[str, Any] = {
    "msc_relevant": None, "msc_role": None, "minimally_manipulated": None,
    "relevance_reason": None, "condition_groups": [], "cell_sources": [],
    "origins": [], "products": [], "evidence": [], "rules_fingerprint": None,
}


def publication_key(rec: PublicationRecord) -> str:
    """The natural key of the paper a record describes: pmid, else pmcid, else doi, else own id."""
    if rec.pmid:
        return f"pmid:{rec.pmid}"
    if rec.pmcid:
        return f"pmcid:{rec.pmcid.upper()}"
    if rec.doi:
        return f"doi:{rec.doi.lower()}"
    return f"{rec.source}:{rec.source_id}"


def _fields(rec: PublicationRecord) -> dict[str, Any]:
    return {
        "pmid": rec.pmid,
        "pmcid": rec.pmcid.upper() if rec.pmcid else None,
        "doi": rec.doi.lower() if rec.doi else None,
        "title": rec.title,
        "abstract": rec.abstract,
        "journal": rec.journal,
        "pub_date": rec.pub_date,
        "pub_year": rec.pub_year,
        "publication_types": rec.publication_types,
        "mesh_terms": [m.term for m in rec.mesh],
        "keywords": rec.keywords,
        "authors": rec.authors,
        "is_preprint": rec.is_preprint,
        "preprint_of": rec.preprint_of,
        "phase": publication_phase(rec.publication_types),
        "index_date": rec.index_date,
        "date_revised": rec.date_revised,
        "url": rec.url,
    }


def _merge(old: dict[str, Any], rec: PublicationRecord) -> dict[str, Any]:
    """The updates a new record brings to a stored publication."""
    new = _fields(rec)
    out: dict[str, Any] = {}
    for name in ("pmid", "pmcid", "doi", "preprint_of"):
        if new[name] and not old[name]:
            out[name] = new[name]
    for name in DESCRIPTIVE:
        if new[name] in (None, "", []):
            continue
        if (rec.source == AUTHORITATIVE or old[name] in (None, "", [])) and old[name] != new[name]:
            out[name] = new[name]
    if old["is_preprint"] and not rec.is_preprint:
        out["is_preprint"] = False  # a published version joined the preprint
    if new["index_date"] and (old["index_date"] is None or new["index_date"] < old["index_date"]):
        out["index_date"] = new["index_date"]
    if rec.source not in old["sources"]:
        out["sources"] = [*old["sources"], rec.source]
    return out


def trial_links(rec: PublicationRecord) -> list[dict[str, Any]]:
    """Trial ids a record declares or mentions, typed by what the paper is."""
    types = {t.lower() for t in rec.publication_types}
    text_type = ("protocol" if "clinical trial protocol" in types
                 else "reports" if types & TRIAL_TYPES else "mentions")
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for acc in rec.accessions:
        tid = normalize_accession(acc.bank, acc.accession)
        if tid:
            out[(tid.registry, tid.registry_id, "databank")] = {
                "registry": tid.registry, "registry_id": tid.registry_id, "found_in": "databank",
                "link_type": "protocol" if text_type == "protocol" else "reports",
                "evidence": f"{acc.bank}: {acc.accession}",
            }
    for where, text in (("title", rec.title), ("abstract", rec.abstract)):
        for tid in extract_trial_ids(text):
            key = (tid.registry, tid.registry_id, where)
            out.setdefault(key, {
                "registry": tid.registry, "registry_id": tid.registry_id, "found_in": where,
                "link_type": text_type, "evidence": tid.matched,
            })
    return list(out.values())


def _find_existing(
    conn: Connection, recs: Sequence[PublicationRecord]
) -> list[dict[str, Any]]:
    """Stored publications sharing an identifier with any of ``recs``."""
    pmids = {r.pmid for r in recs if r.pmid}
    pmcids = {r.pmcid.upper() for r in recs if r.pmcid}
    dois = {r.doi.lower() for r in recs if r.doi}
    preprint_targets = {r.preprint_of.split(":", 1)[1] for r in recs
                        if r.preprint_of and r.preprint_of.startswith("MED:")}
    published_of = {f"MED:{p}" for p in pmids}
    conds = []
    for col, values in ((PUB.c.pmid, pmids | preprint_targets), (PUB.c.pmcid, pmcids),
                        (PUB.c.doi, dois), (PUB.c.preprint_of, published_of)):
        for chunk in _chunks(sorted(values)):
            conds.append(col.in_(chunk))
    if not conds:
        return []
    rows = conn.execute(select(PUB).where(or_(*conds))).mappings().all()
    return [dict(r) for r in rows]


class _Index:
    """Publications by identifier, for matching a batch of records."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.by: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            self.add(row)

    def add(self, row: dict[str, Any]) -> None:
        for name in ("pmid", "pmcid", "doi", "preprint_of"):
            if row.get(name):
                self.by.setdefault((name, row[name]), row)

    def match(self, rec: PublicationRecord) -> dict[str, Any] | None:
        f = _fields(rec)
        for name in ("pmid", "pmcid", "doi"):
            if f[name] and (name, f[name]) in self.by:
                return self.by[(name, f[name])]
        if rec.preprint_of and rec.preprint_of.startswith("MED:"):
            row = self.by.get(("pmid", rec.preprint_of.split(":", 1)[1]))
            if row:
                return row
        if rec.pmid:
            return self.by.get(("preprint_of", f"MED:{rec.pmid}"))
        return None


def upsert_publications(
    conn: Connection,
    records: Iterable[PublicationRecord],
    *,
    run_id: int | None = None,
    now: dt.datetime | None = None,
    known: dict[tuple[str, str], tuple[Any, ...]] | None = None,
) -> UpsertResult:
    """Store listing records in the caller's transaction, merging records of one paper.

    ``known`` may carry ``existing_source_hashes`` rows the caller already read (None: looked
    up, not stored).

    Counts are per listing record: new the first time its source lists it (even when another
    source stored the paper first), unchanged when its hash matches the stored one. A deleted
    citation marks its publication deleted (its history stays). Raises ValueError for a record
    without source or source id.
    """
    now = now or dt.datetime.now(dt.UTC)
    latest: dict[tuple[str, str], PublicationRecord] = {}
    for rec in records:
        if not rec.source or not rec.source_id:
            raise ValueError("a publication record needs a source and a source_id")
        latest[(rec.source, rec.source_id)] = rec
    result = UpsertResult()
    if not latest:
        return result

    stored: dict[tuple[str, str], tuple[int, str]] = dict(known or {})
    by_source: dict[str, list[str]] = {}
    for source, sid in latest:
        if (source, sid) not in stored:
            by_source.setdefault(source, []).append(sid)
    for source, ids in by_source.items():
        for sid, row in existing_source_hashes(conn, source, ids).items():
            stored[(source, sid)] = row
    stored = {k: v for k, v in stored.items() if v is not None}  # drop "looked up, absent"

    todo = []
    for key, rec in latest.items():
        old = stored.get(key)
        if old is not None and old[1] == rec.content_hash:
            result.unchanged += 1
        else:
            todo.append(rec)
    if not todo:
        return result

    known_ids = {stored[(r.source, r.source_id)][0] for r in todo if (r.source, r.source_id) in stored}
    rows = _find_existing(conn, todo)
    have = {r["id"] for r in rows}
    missing = known_ids - have
    if missing:
        rows += [dict(r) for r in conn.execute(
            select(PUB).where(PUB.c.id.in_(sorted(missing)))).mappings()]
    by_id = {r["id"]: r for r in rows}
    index = _Index(rows)

    pending_updates: dict[int, dict[str, Any]] = {}
    label_of: dict[int, Any] = {}
    source_rows = []
    link_rows: list[dict[str, Any]] = []
    new_rows: list[dict[str, Any]] = []  # inserted in one executemany; ids < 0 until then
    for rec in todo:
        key = (rec.source, rec.source_id)
        row = by_id.get(stored[key][0]) if key in stored else index.match(rec)
        if rec.deleted:
            if row is not None:
                row["deleted"] = True
                if row["id"] > 0:
                    pending_updates.setdefault(row["id"], {})["deleted"] = True
                    result.changed += 1
                    result.changed_ids.append(row["id"])
            else:
                result.unchanged += 1  # a deletion of a paper we never stored
            continue
        if row is None:
            row = {**_fields(rec), **_LABEL_DEFAULTS,
                   **label_values(rec.labels, rec.rules_fingerprint),
                   "key": publication_key(rec), "sources": [rec.source],
                   "deleted": False, "first_seen_at": now, "last_changed_at": now,
                   "first_seen_run_id": run_id, "last_changed_run_id": run_id,
                   "id": -len(new_rows) - 1}
            new_rows.append(row)
            if rec.labels is not None:
                label_of[row["id"]] = rec.labels
            by_id[row["id"]] = row
            index.add(row)
        else:
            changes = _merge(row, rec)
            if rec.labels is not None and (rec.source == AUTHORITATIVE or not row.get(
                    "rules_fingerprint")):
                changes.update(label_values(rec.labels, rec.rules_fingerprint))
                label_of[row["id"]] = rec.labels
            if changes:
                row.update(changes)
                index.add(row)
                if row["id"] > 0:
                    pending_updates.setdefault(row["id"], {}).update(changes)
            if row["id"] > 0:
                # Per listing: a paper this source lists for the first time is new to it,
                # whichever source stored the paper first (sources run side by side).
                if key in stored:
                    result.changed += 1
                else:
                    result.new += 1
                result.changed_ids.append(row["id"])
        source_rows.append({
            "publication_id": row["id"], "source": rec.source, "source_id": rec.source_id,
            "content_hash": rec.content_hash, "raw": compress(rec.raw),
            "first_seen_at": now, "last_changed_at": now,
        })
        link_rows += [{"publication_id": row["id"], **link} for link in trial_links(rec)]

    if new_rows:
        for row in new_rows:
            row["key"] = publication_key_of(row)
        # One executemany, then the ids by key (unique): INSERT .. RETURNING with ordered
        # results runs row by row on SQLite, which cost more than the rest of the insert.
        execute_many(conn, PUB.insert(), [{k: v for k, v in row.items() if k != "id"}
                                          for row in new_rows])
        id_of: dict[str, int] = {}
        for chunk in _chunks([row["key"] for row in new_rows]):
            id_of.update(conn.execute(select(PUB.c.key, PUB.c.id).where(PUB.c.key.in_(chunk))).all())
        ids = [id_of[row["key"]] for row in new_rows]
        real = {row["id"]: pid for row, pid in zip(new_rows, ids, strict=True)}
        for r in (*source_rows, *link_rows):
            r["publication_id"] = real.get(r["publication_id"], r["publication_id"])
        label_of = {real.get(k, k): v for k, v in label_of.items()}
        result.new += len(ids)
        result.new_ids += ids
    if new_rows:
        search.write(conn, "publication", [(real[row["id"]], search.paper_document(row))
                                           for row in new_rows if not row["deleted"]],
                     replace=False)
    search.write(conn, "publication", [
        (pid, search.paper_document(by_id[pid])) for pid, changes in pending_updates.items()
        if not by_id[pid]["deleted"] and INDEXED.intersection(changes)])
    search.remove(conn, "publication", [pid for pid, changes in pending_updates.items()
                                        if changes.get("deleted")])
    for pid, changes in pending_updates.items():
        row = by_id[pid]
        best = publication_key_of(row)
        if best != row["key"]:
            taken = conn.execute(select(PUB.c.id).where(PUB.c.key == best)).scalar()
            if taken is None:
                changes["key"] = best
        changes.update(last_changed_at=now, last_changed_run_id=run_id)
        conn.execute(update(PUB).where(PUB.c.id == pid).values(**changes))
    replace_label_rows(conn, "publication", list(label_of.items()))
    keep_source_versions(conn, [key for key in (
        (r.source, r.source_id) for r in todo if not r.deleted) if key in stored], now)
    if source_rows:
        stmt = _insert(conn, SRC)
        stmt = stmt.on_conflict_do_update(
            index_elements=[SRC.c.source, SRC.c.source_id],
            set_={c: stmt.excluded[c] for c in ("publication_id", "content_hash", "raw",
                                                 "last_changed_at")},
        )
        execute_many(conn, stmt, source_rows)
    if link_rows:
        stmt = _insert(conn, LINK).on_conflict_do_nothing(
            index_elements=[LINK.c.publication_id, LINK.c.registry, LINK.c.registry_id,
                            LINK.c.found_in])
        execute_many(conn, stmt, link_rows)
    return result


def keep_source_versions(
    conn: Connection, keys: Sequence[tuple[str, str]], now: dt.datetime
) -> None:
    """Copy the stored listing records about to be replaced into ``publication_source_version``
    (raw as stored, compressed), so every version of every listing is kept."""
    by_source: dict[str, list[str]] = {}
    for source, sid in keys:
        by_source.setdefault(source, []).append(sid)
    version = PublicationSourceVersion.__table__
    for source, ids in by_source.items():
        for chunk in _chunks(ids):
            conn.execute(insert(version).from_select(
                ["publication_source_id", "content_hash", "raw", "seen_from", "seen_until"],
                select(SRC.c.id, SRC.c.content_hash, SRC.c.raw, SRC.c.last_changed_at,
                       literal(now, SRC.c.last_changed_at.type)).where(
                    SRC.c.source == source, SRC.c.source_id.in_(chunk))))


def existing_source_hashes(
    conn: Connection, source: str, source_ids: Sequence[str]
) -> dict[str, tuple[int, str]]:
    """Stored (publication_id, content_hash) per source id, for the ids that exist."""
    out: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(list(source_ids)):
        stmt = select(SRC.c.source_id, SRC.c.publication_id, SRC.c.content_hash).where(
            SRC.c.source == source, SRC.c.source_id.in_(chunk))
        for sid, pid, h in conn.execute(stmt):
            out[sid] = (pid, h)
    return out


def publication_key_of(row: dict[str, Any]) -> str:
    """The best key for a stored publication row (pmid, pmcid, doi, or its current key)."""
    if row.get("pmid"):
        return f"pmid:{row['pmid']}"
    if row.get("pmcid"):
        return f"pmcid:{row['pmcid']}"
    if row.get("doi"):
        return f"doi:{row['doi']}"
    return str(row["key"])
