"""Helpers shared by the fault, crash and concurrency tests: run the installed ``tracker``
console script as a separate process, and compare databases by their logical content.

A *snapshot* is what a researcher would see in the database, without the bookkeeping that
legitimately differs between two runs of the same data (timestamps, run ids, row ids,
``fetch_run`` and the watermark date): every study keyed by registry id with its content hash
and key fields plus the number of child rows of each kind, every publication keyed by its key
with its sources, listings (``publication_source``) and trial links, every label, and the
quarantine. Two databases that hold the same records have equal snapshots whatever order or
how many runs stored them; a duplicate, a gap, a lost or half-written record changes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

TRACKER = Path(sys.executable).parent / "tracker"
CMD = [str(TRACKER)] if TRACKER.exists() else [sys.executable, "-m", "tracker"]

STUDY_FIELDS = (
    "content_hash", "title", "status", "status_raw", "phase", "phase_raw", "study_type",
    "enrollment", "sponsor", "first_posted", "last_update_posted", "start_date",
    "completion_date", "has_results", "conditions", "interventions", "msc_relevant",
)
STUDY_CHILDREN = (
    "study_condition", "study_intervention", "study_mesh", "study_secondary_id",
    "study_reference", "study_change",
)
PUB_FIELDS = ("pmid", "pmcid", "doi", "title", "deleted", "is_preprint", "index_date",
              "sources", "msc_relevant")


def base_env(**extra: str) -> dict[str, str]:
    """The process environment without any TRACKER_/NCBI_/proxy variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRACKER_", "NCBI_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    # the network guard of tests/netguard/sitecustomize.py, in every process a test starts
    guard = str(Path(__file__).resolve().parent / "netguard")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (guard, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def only_sources(*names: str) -> dict[str, str]:
    """``TRACKER_<SOURCE>_ENABLED`` for every fetched source: on for ``names``, off for the
    rest (every source is on by default, and a test's server answers for the ones it names)."""
    from sources import fetched

    return {f"TRACKER_{n.upper()}_ENABLED": "true" if n in names else "false"
            for n in fetched()}


def tracker(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed console script to completion."""
    return subprocess.run([*CMD, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def connect(db: Path) -> sqlite3.Connection:
    """A read-only connection (does not create the file, does not take part in writes)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[sqlite3.Row]:
    return conn.execute(sql, args).fetchall()


def snapshot(db: Path) -> dict[str, Any]:
    """The logical content of a tracker SQLite database (see the module docstring)."""
    if not db.exists():
        return {"studies": {}, "publications": {}, "labels": [], "quarantine": []}
    conn = connect(db)
    try:
        studies: dict[str, Any] = {}
        ids: dict[int, str] = {}
        for r in _rows(conn, f"SELECT id, registry, registry_id, {', '.join(STUDY_FIELDS)} "
                       "FROM study"):
            key = f"{r['registry']}:{r['registry_id']}"
            assert key not in studies, f"duplicate study {key}"
            ids[r["id"]] = key
            studies[key] = {f: r[f] for f in STUDY_FIELDS}
        for child in STUDY_CHILDREN:
            counts = dict(_rows(conn, f"SELECT study_id, count(*) FROM {child} GROUP BY study_id"))
            for sid, key in ids.items():
                studies[key][child] = counts.get(sid, 0)
            orphans = set(counts) - set(ids)
            assert not orphans, f"{child} rows of no study: {orphans}"
        pubs: dict[str, Any] = {}
        pids: dict[int, str] = {}
        for r in _rows(conn, f"SELECT id, key, {', '.join(PUB_FIELDS)} FROM publication"):
            assert r["key"] not in pubs, f"duplicate publication {r['key']}"
            pids[r["id"]] = r["key"]
            pubs[r["key"]] = {f: r[f] for f in PUB_FIELDS} | {"listings": [], "trials": []}
        for r in _rows(conn, "SELECT publication_id, source, source_id, content_hash "
                       "FROM publication_source ORDER BY source, source_id"):
            pubs[pids[r["publication_id"]]]["listings"].append(
                (r["source"], r["source_id"], r["content_hash"]))
        for r in _rows(conn, "SELECT publication_id, registry, registry_id, link_type, found_in "
                       "FROM publication_trial ORDER BY registry, registry_id, found_in"):
            pubs[pids[r["publication_id"]]]["trials"].append(
                (r["registry"], r["registry_id"], r["link_type"], r["found_in"]))
        labels = []
        for r in _rows(conn, "SELECT kind, record_id, family, label FROM record_label"):
            owner = (ids if r["kind"] == "study" else pids).get(r["record_id"], "?orphan")
            labels.append((r["kind"], owner, r["family"], r["label"]))
        quarantine = sorted((r["source"], r["record_key"]) for r in
                            _rows(conn, "SELECT source, record_key FROM quarantine"))
    finally:
        conn.close()
    return {"studies": studies, "publications": pubs, "labels": sorted(labels),
            "quarantine": quarantine}


def record_keys(snap: dict[str, Any]) -> set[str]:
    """Every stored record: studies, publications and each publication's listings."""
    keys = {f"study {k}" for k in snap["studies"]}
    for key, pub in snap["publications"].items():
        keys.add(f"publication {key}")
        keys |= {f"listing {s}:{i}" for s, i, _ in pub["listings"]}
    return keys


def lost(baseline: dict[str, Any], snap: dict[str, Any]) -> set[str]:
    """Records of ``baseline`` that ``snap`` does not hold."""
    return record_keys(baseline) - record_keys(snap)


def diff(expected: dict[str, Any], actual: dict[str, Any], limit: int = 8) -> list[str]:
    """A short, readable list of the differences between two snapshots."""
    out: list[str] = []
    for part in ("studies", "publications"):
        e, a = expected[part], actual[part]
        for k in sorted(set(e) - set(a)):
            out.append(f"{part}: missing {k}")
        for k in sorted(set(a) - set(e)):
            out.append(f"{part}: unexpected {k}")
        for k in sorted(set(e) & set(a)):
            if e[k] != a[k]:
                fields = {f: (e[k][f], a[k][f]) for f in e[k] if e[k][f] != a[k].get(f)}
                out.append(f"{part}: {k} differs {fields}")
    for part in ("labels", "quarantine"):
        if expected[part] != actual[part]:
            es, as_ = set(expected[part]), set(actual[part])
            out.append(f"{part}: missing {sorted(es - as_)[:5]}, unexpected {sorted(as_ - es)[:5]}")
    return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])


def state(db: Path, source: str) -> dict[str, Any] | None:
    """The source_state row of ``source`` (watermark, last success, last run id) or None."""
    if not db.exists():
        return None
    conn = connect(db)
    try:
        row = conn.execute("SELECT watermark, last_success_at, last_run_id FROM source_state "
                           "WHERE source = ?", (source,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return dict(row) if row else None


def runs(db: Path, source: str | None = None) -> list[dict[str, Any]]:
    """Rows of fetch_run, oldest first."""
    conn = connect(db)
    try:
        sql = "SELECT * FROM fetch_run" + (" WHERE source = ?" if source else "") + " ORDER BY id"
        return [dict(r) for r in conn.execute(sql, (source,) if source else ())]
    finally:
        conn.close()


def write_config(path: Path, **values: Any) -> Path:
    """A TOML config file of top-level scalar keys (e.g. ``backoff_cap=0.2``)."""
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path
