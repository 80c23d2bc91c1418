"""``tracker classify``: re-label every stored record from its stored raw record, and retry
quarantined records, without touching the network. The full-text index is written again on
the way (``db.search``: studies from their parsed raw records, papers from their rows), so a
database whose index fell out of step is whole again afterwards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from db import search
from db.labels import store_labels
from db.models import Publication, PublicationSource, Quarantine, Study
from db.quarantine import release
from db.upsert import decompress
from sources import get_source, parse_raw
from tracker.classify import Rules, classify_publication, classify_study, load_rules
from tracker.config import Settings
from tracker.errors import one_line
from tracker.pipeline import label, settled_heap, store_records

BATCH = 500
S = Study.__table__
P = Publication.__table__
SRC = PublicationSource.__table__
Q = Quarantine.__table__
PAPER_PREFERENCE = ("pubmed", "europepmc")  # PubMed's labels win when a paper has both


@dataclass
class RelabelResult:
    """What ``relabel_all`` did."""

    studies: int = 0
    papers: int = 0
    relevance_changed: int = 0
    quarantine_stored: int = 0
    quarantine_left: int = 0

    def line(self) -> str:
        """One-line summary."""
        return (f"classified {self.studies} studies and {self.papers} papers "
                f"({self.relevance_changed} changed relevance); quarantine: "
                f"{self.quarantine_stored} stored, {self.quarantine_left} still failing")


def relabel_all(engine: Engine, settings: Settings) -> RelabelResult:
    """Re-label every study and paper with the configured rules; retry the quarantine."""
    rules = load_rules(settings.rules)
    with settled_heap():
        return _relabel_all(engine, settings, rules)


def _relabel_all(engine: Engine, settings: Settings, rules: Rules) -> RelabelResult:
    out = RelabelResult()
    last = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(select(S.c.id, func.coalesce(S.c.source, S.c.registry),
                                       S.c.raw, S.c.msc_relevant).where(
                S.c.id > last).order_by(S.c.id).limit(BATCH)).all()
            if not rows:
                break
            labelled = []
            docs = []
            for sid, registry, raw, old in rows:
                rec = parse_raw(registry, decompress(raw))
                labels = classify_study(rec, rules)
                labelled.append((sid, labels))
                docs.append((sid, search.study_document(rec)))
                out.relevance_changed += old is not None and old != labels.msc_relevant
            store_labels(conn, S, "study", labelled, rules.fingerprint)
            search.write(conn, "study", docs)
            out.studies += len(rows)
            last = rows[-1][0]
    last = 0
    while True:
        with engine.begin() as conn:
            pubs = conn.execute(select(P.c.id, P.c.msc_relevant, P.c.title, P.c.keywords,
                                       P.c.mesh_terms, P.c.abstract).where(
                P.c.id > last, P.c.deleted.is_(False)).order_by(P.c.id).limit(BATCH)).all()
            if not pubs:
                break
            ids = [p[0] for p in pubs]
            raws: dict[int, tuple[str, bytes]] = {}
            for pid, source, raw in conn.execute(select(
                    SRC.c.publication_id, SRC.c.source, SRC.c.raw).where(
                    SRC.c.publication_id.in_(ids))):
                have = raws.get(pid)
                if have is None or (PAPER_PREFERENCE.index(source) <
                                    PAPER_PREFERENCE.index(have[0])):
                    raws[pid] = (source, raw)
            search.write(conn, "publication", [(p[0], search.paper_document(p._mapping))
                                               for p in pubs])
            labelled = []
            for pid, old, *_ in pubs:
                if pid not in raws:
                    continue
                source, raw = raws[pid]
                labels = classify_publication(parse_raw(source, decompress(raw)), rules)
                labelled.append((pid, labels))
                out.relevance_changed += old is not None and old != labels.msc_relevant
            store_labels(conn, P, "publication", labelled, rules.fingerprint)
            out.papers += len(labelled)
            last = ids[-1]
    _retry_quarantine(engine, settings, rules, out)
    return out


def _retry_quarantine(engine: Engine, settings: Settings, rules: Any, out: RelabelResult) -> None:
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        rows = conn.execute(select(Q.c.id, Q.c.source, Q.c.record_key, Q.c.raw)).all()
        for qid, name, key, raw in rows:
            source = get_source(name, settings)
            try:
                record = source.parse(source.item_from_bytes(decompress(raw)))
                label([record], source.kind, rules)
            except Exception as exc:  # noqa: BLE001 - a record still unreadable stays quarantined
                conn.execute(update(Q).where(Q.c.id == qid).values(
                    error=one_line(f"{type(exc).__name__}: {exc}")[:2000],
                    attempts=Q.c.attempts + 1, last_seen_at=now))
                out.quarantine_left += 1
                continue
            store_records(conn, source.kind, [record], None, now)
            release(conn, name, [key])
            out.quarantine_stored += 1
