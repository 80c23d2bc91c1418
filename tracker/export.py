"""``tracker export``: the tables people analyse, one file each, for R, pandas or DuckDB.

Files (``NAME.csv``, ``NAME.jsonl`` or ``NAME.parquet`` in the output folder), read from the
views of ``db.views`` on SQLite and PostgreSQL alike:

* ``studies``: ``studies_view`` (no raw records, hashes or run ids; labels as lists);
* ``papers``: ``papers_view`` (with the trial ids each names);
* ``changes``: ``changes_view``, one row per field change;
* ``labels``: ``labels_view``, one row per label of a study or paper;
* ``links``: ``links_view``, papers and trials linked from either side;
* ``countries``: one row per study and location country.

Lists stay lists in JSON lines and Parquet (``list<string>``) and are joined with "; " in CSV,
whose cells are cleaned and guarded against spreadsheet formulas as ``tracker studies -f csv``
does; dates are ISO strings, times ISO UTC with ``Z``, booleans true/false. Each file is
written whole, then moved into place. Parquet needs pyarrow (``pip install
'msc-trial-tracker[parquet]'``).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection

from tracker.errors import ConfigError

FORMATS = ("csv", "jsonl", "parquet")
EXPORTS = {
    "studies": "SELECT * FROM studies_view ORDER BY id",
    "papers": "SELECT * FROM papers_view ORDER BY id",
    "changes": "SELECT * FROM changes_view ORDER BY id",
    "labels": "SELECT * FROM labels_view ORDER BY id",
    "links": "SELECT * FROM links_view ORDER BY registry_id, pmid",
    "countries": ("SELECT s.registry, s.registry_id, c.country, c.study_id FROM study_country c "
                  "JOIN study s ON s.id = c.study_id ORDER BY s.registry_id, c.country"),
}
LISTS = {"conditions", "condition_groups", "cell_sources", "origins", "products",
         "interventions", "keywords", "mesh_terms", "countries", "publication_types",
         "sources", "trial_ids"}
BOOLEANS = {"msc_relevant", "minimally_manipulated", "has_results", "is_preprint", "deleted"}
INTEGERS = {"id", "enrollment", "pub_year", "study_id", "publication_id"}
TIMES = {"first_seen_at", "last_changed_at", "seen_at"}
PARQUET_INSTALL = ("--format parquet needs pyarrow; install the parquet extra: pip install "
                   "'msc-trial-tracker[parquet]' (or pip install pyarrow)")
BATCH = 5000


def _value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in LISTS:
        if isinstance(value, (str, bytes)):
            value = orjson.loads(value) if value else []
        return [str(v) for v in value]
    if name in BOOLEANS:
        return bool(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if name in TIMES and isinstance(value, str):  # SQLite keeps UTC times as naive text
        return value.replace(" ", "T") + ("" if value.endswith("Z") or "+" in value else "Z")
    return value


def rows(conn: Connection, sql: str) -> tuple[list[str], Iterator[list[dict[str, Any]]]]:
    """The column names of ``sql`` and its rows as export values, in batches."""
    result = conn.execution_options(stream_results=True).execute(text(sql))
    names = list(result.keys())

    def batches() -> Iterator[list[dict[str, Any]]]:
        while True:
            batch = result.fetchmany(BATCH)
            if not batch:
                return
            yield [{n: _value(n, v) for n, v in zip(names, r, strict=True)} for r in batch]

    return names, batches()


def check_format(fmt: str) -> str:
    """Validate ``--format``; parquet also needs pyarrow (ConfigError saying how to add it)."""
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise ConfigError(PARQUET_INSTALL) from None
    return fmt


def export(conn: Connection, fmt: str, folder: Path) -> list[tuple[str, int]]:
    """Write every export of ``EXPORTS`` into ``folder`` in ``fmt``; (file name, rows) each."""
    done = []
    for name, sql in EXPORTS.items():
        target = folder / f"{name}.{fmt}"
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            names, batches = rows(conn, sql)
            count = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}[fmt](
                names, batches, tmp)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        done.append((target.name, count))
    return done


def _csv(names: list[str], batches: Iterator[list[dict[str, Any]]], path: Path) -> int:
    from tracker.render import _csv_cell

    count = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for batch in batches:
            writer.writerows([_csv_cell(r[c]) for c in names] for r in batch)
            count += len(batch)
    return count


def _jsonl(names: list[str], batches: Iterator[list[dict[str, Any]]], path: Path) -> int:
    from tracker.render import _json_safe

    count = 0
    with path.open("wb") as fh:
        for batch in batches:
            fh.write(b"".join(orjson.dumps(_json_safe(r)) + b"\n" for r in batch))
            count += len(batch)
    return count


def _parquet(names: list[str], batches: Iterator[list[dict[str, Any]]], path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(name: str) -> Any:
        if name in LISTS:
            return pa.list_(pa.string())
        if name in BOOLEANS:
            return pa.bool_()
        if name in INTEGERS:
            return pa.int64()
        return pa.string()

    schema = pa.schema([(n, kind(n)) for n in names])
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in batches:
            writer.write_table(pa.Table.from_pylist(
                [{k: (v if k in LISTS or k in BOOLEANS or k in INTEGERS or v is None
                      else str(v)) for k, v in r.items()} for r in batch], schema=schema))
            count += len(batch)
    return count
