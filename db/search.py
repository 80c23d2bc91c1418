"""The full-text index of studies and papers, on SQLite and PostgreSQL alike.

SQLite: two FTS5 tables named as sqlite-utils names them, so Datasette and ``sqlite-utils
search`` find them: ``study_fts`` (rowid = ``study.id``) and ``publication_fts`` (rowid =
``publication.id``). They are regular FTS5 tables (they keep their own copy of the text): a
study's document holds text that is not in ``study``'s columns (the detailed description,
interventions' other names and descriptions), so ``content="study"`` could not hold it.
PostgreSQL: ``study_fts`` / ``publication_fts`` tables of (``id`` -> the record, ``document``
``tsvector``) with a GIN index.

One tokenisation for both engines, so that one query finds the same ids on both: a token is a
run of letters and digits (``[^\\W_]+``), lower-cased, accents removed (NFKD). ASCII text,
almost all of it, goes to FTS5 as it is (its ``unicode61`` tokenizer splits and folds ASCII
exactly so); other text goes normalised. PostgreSQL gets the tokens themselves as a tsvector
literal (``'token':position`` with a weight per column), not through its own parser, whose
rules for hyphens, numbers, URLs and locales differ. Columns are set apart by a gap of
positions, so a phrase never spans two columns there either, as in FTS5. Two PostgreSQL limits
are met where FTS5 has none: positions stop at 16,383 and a token keeps its first 256 of them,
so a phrase found only past those in a very long record is found by SQLite alone; tokens of
more than 500 characters are not indexed on PostgreSQL (a query may not hold one).

Kept in step by the writers: ``db.upsert`` (new and changed studies), ``db.publications``
(new and changed papers; a PubMed DeleteCitation takes the paper out of the index),
``tracker classify`` (every record from its stored raw record) and migration 0006, which
builds the index for an existing database (``rebuild``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection

STUDY_FTS = "study_fts"
PAPER_FTS = "publication_fts"
STUDY_FIELDS = ("title", "conditions", "interventions", "keywords", "mesh", "summary")
PAPER_FIELDS = ("title", "keywords", "mesh", "abstract")
# Column weights: bm25() on SQLite, tsvector weights A-D (ts_rank) on PostgreSQL.
STUDY_BM25 = (10.0, 6.0, 6.0, 4.0, 3.0, 1.0)
PAPER_BM25 = (10.0, 4.0, 3.0, 1.0)
STUDY_PG_WEIGHTS = "ABBBCD"
PAPER_PG_WEIGHTS = "ABCD"
TABLES = {"study": (STUDY_FTS, STUDY_FIELDS, STUDY_BM25, STUDY_PG_WEIGHTS),
          "publication": (PAPER_FTS, PAPER_FIELDS, PAPER_BM25, PAPER_PG_WEIGHTS)}
TOKENIZE = "unicode61 remove_diacritics 2"
MAX_POSITION = 16383  # PostgreSQL's last tsvector position
MAX_POSITIONS = 256  # positions PostgreSQL keeps per lexeme
MAX_TOKEN = 500  # characters; longer tokens are not indexed on PostgreSQL
COLUMN_GAP = 100  # positions between two columns (no phrase across them)
_CHUNK = 500

_TOKEN = re.compile(r"[^\W_]+")
# Combining marks NFKD splits from Latin, Greek and Cyrillic letters (é -> e + U+0301).
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def index_text(value: str | None) -> str:
    """``value`` as the index stores it: ASCII unchanged; anything else decomposed, its accents
    dropped and lower-cased (what FTS5 then reads splits into the same tokens as ``tokens``)."""
    if not value:
        return ""
    if value.isascii():
        return value
    return _MARKS.sub("", unicodedata.normalize("NFKD", value)).lower()


def tokens(value: str | None) -> list[str]:
    """The index's tokens of ``value``: runs of letters and digits, lower-case, no accents."""
    return _TOKEN.findall(index_text(value).lower())


def _join(values: Iterable[str | None]) -> str:
    return "\n".join(v for v in values if v)


def study_document(rec: Any) -> tuple[str, ...]:
    """The indexed text of a parsed study (``StudyRecord``), one string per ``STUDY_FIELDS``:
    brief and official titles and acronym; conditions; interventions and their other names;
    keywords; MeSH terms (not their tree ancestors); brief summary, detailed description and
    the interventions' descriptions."""
    ivs = rec.interventions
    return (
        _join((rec.title, rec.official_title, rec.acronym)),
        _join(rec.conditions),
        _join(x for iv in ivs for x in (iv.name, *iv.other_names)),
        _join(rec.keywords),
        _join(m.term for m in rec.mesh if not m.ancestor),
        _join((rec.brief_summary, rec.detailed_description, *(iv.description for iv in ivs))),
    )


def _list(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)):
        value = orjson.loads(value) if value else []
    return [str(v) for v in value or () if v]


def study_document_from_row(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A study's document from its stored columns alone, for a raw record that no longer
    parses (no detailed description, no interventions' other names)."""
    return (
        _join((row["title"], row.get("official_title"), row.get("acronym"))),
        _join(_list(row.get("conditions"))),
        _join(_list(row.get("interventions"))),
        _join(_list(row.get("keywords"))),
        _join(_list(row.get("mesh_terms"))),
        _join((row.get("brief_summary"),)),
    )


def paper_document(row: Mapping[str, Any]) -> tuple[str, ...]:
    """A stored paper's indexed text (``PAPER_FIELDS``): title, keywords, MeSH terms,
    abstract."""
    return (row.get("title") or "", _join(_list(row.get("keywords"))),
            _join(_list(row.get("mesh_terms"))), row.get("abstract") or "")


def tsvector_literal(document: Sequence[str], weights: str) -> str:
    """``document`` as a PostgreSQL tsvector literal of ``tokens``, one weight per column."""
    where: dict[str, list[str]] = {}
    pos = 0
    for value, weight in zip(document, weights, strict=True):
        mark = "" if weight == "D" else weight
        for tok in tokens(value):
            pos += 1
            if len(tok) > MAX_TOKEN:
                continue
            have = where.setdefault(tok, [])
            if len(have) < MAX_POSITIONS:
                have.append(f"{min(pos, MAX_POSITION)}{mark}")
        pos += COLUMN_GAP
    return " ".join(f"'{tok}':{','.join(p)}" for tok, p in where.items())


# ---------------------------------------------------------------------------- schema ------


def create_index(conn: Connection) -> None:
    """Create the (empty) index tables of this engine."""
    for kind, (name, fields, _, _) in TABLES.items():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5("
                f"{', '.join(fields)}, tokenize='{TOKENIZE}')")
        else:
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} (id integer PRIMARY KEY REFERENCES "
                f"{kind} (id) ON DELETE CASCADE, document tsvector NOT NULL)")
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{name}_document ON {name} "
                                 "USING gin (document)")


def drop_index(conn: Connection) -> None:
    """Drop the index tables (the records are untouched)."""
    for name, *_ in TABLES.values():
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def index_table_names(dialect: str) -> set[str]:
    """Every table the index consists of on ``dialect`` (FTS5 adds shadow tables)."""
    names = {name for name, *_ in TABLES.values()}
    if dialect == "sqlite":
        names |= {f"{n}_{s}" for n in set(names)
                  for s in ("data", "idx", "content", "docsize", "config")}
    return names


# ---------------------------------------------------------------------------- writes ------


def write(conn: Connection, kind: str, docs: Sequence[tuple[int, Sequence[str]]], *,
          replace: bool = True) -> None:
    """Index ``docs`` ((record id, document) pairs) of ``kind`` ("study" or "publication"),
    replacing what the index held for those ids (``replace=False``: ids known to be new)."""
    if not docs:
        return
    name, fields, _, weights = TABLES[kind]
    if conn.dialect.name == "sqlite":
        if replace:
            remove(conn, kind, [rid for rid, _ in docs])
        marks = ", ".join("?" * (len(fields) + 1))
        conn.exec_driver_sql(
            f"INSERT INTO {name} (rowid, {', '.join(fields)}) VALUES ({marks})",
            [(rid, *(index_text(v) for v in doc)) for rid, doc in docs])
        return
    conn.execute(text(
        f"INSERT INTO {name} (id, document) VALUES (:id, CAST(:doc AS tsvector)) "
        "ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document"),
        [{"id": rid, "doc": tsvector_literal(doc, weights)} for rid, doc in docs])


def remove(conn: Connection, kind: str, ids: Sequence[int]) -> None:
    """Take the records ``ids`` of ``kind`` out of the index."""
    name = TABLES[kind][0]
    key = "rowid" if conn.dialect.name == "sqlite" else "id"
    ids = list(ids)
    stmt = text(f"DELETE FROM {name} WHERE {key} IN :ids").bindparams(_expanding("ids"))
    for i in range(0, len(ids), _CHUNK):
        conn.execute(stmt, {"ids": ids[i : i + _CHUNK]})


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def study_docs_from_raw(rows: Iterable[Mapping[str, Any]]) -> Iterable[tuple[int, Any, tuple[str, ...]]]:
    """(id, parsed record or None, document) for stored study rows (``id``, ``registry``,
    ``raw`` and the columns ``study_document_from_row`` reads): parsed again from the raw
    record, else from the columns."""
    from db.upsert import decompress
    from sources import parse_raw

    for row in rows:
        try:
            rec = parse_raw(row.get("source") or row["registry"], decompress(row["raw"]))
        except Exception:  # noqa: BLE001 - a record that no longer parses: its columns
            yield row["id"], None, study_document_from_row(row)
            continue
        yield row["id"], rec, study_document(rec)


STUDY_ROW_SQL = ("SELECT id, registry, {source}raw, title, official_title, acronym, conditions, "
                 "interventions, keywords, mesh_terms, brief_summary FROM study "
                 "WHERE id > :last ORDER BY id LIMIT :n")
PAPER_ROW_SQL = ("SELECT id, title, keywords, mesh_terms, abstract FROM publication "
                 "WHERE id > :last AND deleted = :no ORDER BY id LIMIT :n")


def rebuild(conn: Connection, *, on_study: Callable[[int, Any], None] | None = None,
            batch: int = 1000) -> tuple[int, int]:
    """Fill the index from every stored record (the index tables exist and are empty);
    ``on_study(id, parsed record or None)`` sees each study as it is read. Returns the
    numbers of studies and papers indexed."""
    counts = [0, 0]
    last = 0
    # ``study.source`` came with revision 0008; migration 0006 rebuilds the index before it.
    from sqlalchemy import inspect

    has_source = any(c["name"] == "source" for c in inspect(conn).get_columns("study"))
    sql = text(STUDY_ROW_SQL.format(source="source, " if has_source else ""))
    while True:
        rows = [dict(r) for r in conn.execute(sql, {"last": last, "n": batch}).mappings()]
        if not rows:
            break
        docs = []
        for sid, rec, doc in study_docs_from_raw(rows):
            docs.append((sid, doc))
            if on_study is not None:
                on_study(sid, rec)
        write(conn, "study", docs, replace=False)
        counts[0] += len(docs)
        last = rows[-1]["id"]
    last = 0
    while True:
        rows = [dict(r) for r in conn.execute(text(PAPER_ROW_SQL), {
            "last": last, "n": batch * 5, "no": False}).mappings()]
        if not rows:
            break
        write(conn, "publication", [(r["id"], paper_document(r)) for r in rows], replace=False)
        counts[1] += len(rows)
        last = rows[-1]["id"]
    return counts[0], counts[1]


def index_bytes(conn: Connection) -> int | None:
    """The index's size on disk (None where this engine cannot say)."""
    if conn.dialect.name == "postgresql":
        return int(conn.execute(text(
            "SELECT pg_total_relation_size('study_fts') + pg_total_relation_size("
            "'publication_fts')")).scalar_one())
    try:
        names = sorted(index_table_names("sqlite"))
        stmt = text("SELECT SUM(pgsize) FROM dbstat WHERE name IN :names").bindparams(
            _expanding("names"))
        return int(conn.execute(stmt, {"names": names}).scalar() or 0)
    except Exception:  # noqa: BLE001 - SQLite built without the dbstat table
        return None
