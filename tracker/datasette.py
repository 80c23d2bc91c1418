"""The tracker's SQLite file in Datasette: ``metadata.json`` (``tracker datasette-metadata``)
and ``tracker serve``.

The metadata describes the readable views (``db.views``) and the main tables, their columns,
the facets people use (phase, status, and the label lists as array facets), the full-text
index each is searched through (``fts_table`` / ``fts_pk``: Datasette's search box on a view
or table, backed by ``study_fts`` / ``publication_fts``) and the default order. Datasette is an
optional extra (``pip install 'msc-trial-tracker[web]'``); nothing here imports it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tracker.errors import ConfigError

INSTALL = ("Datasette is not installed; install the web extra: pip install "
           "'msc-trial-tracker[web]' (or pip install datasette)")

_LABELS = {
    "condition_groups": "Condition groups the classifier found (JSON list; the chronic-pain "
                        "groups first)",
    "cell_sources": "Cell sources: bone_marrow, adipose, umbilical_cord, ... (JSON list)",
    "origins": "autologous / allogeneic / unspecified (JSON list)",
    "products": "cells, extracellular_vesicles, secretome, unspecified (JSON list)",
    "msc_relevant": "1 when the classifier judged the record to be about MSCs (role therapy "
                    "or laboratory)",
    "msc_role": "How MSCs figure: therapy (given in an arm), laboratory (isolated MSCs "
                "studied), manufacturing, endogenous (the patient's own, measured or "
                "mobilised), mention, none",
    "minimally_manipulated": "1 for BMAC, SVF, micro-fragmented fat: MSCs given without "
                             "culture expansion",
    "relevance_reason": "Why the classifier judged so",
}
_STUDY_COLUMNS = {
    "id": "Row id (study_fts rowid)",
    "registry": "Registry (ctgov)", "registry_id": "Registry id, e.g. NCT01234567",
    "title": "Brief title", "official_title": "Official title",
    "phase": "Canonical phase (PHASE1, PHASE1_2, PHASE2, ...)",
    "status": "Canonical status (RECRUITING, COMPLETED, ...)",
    "why_stopped": "The registry's reason for stopping",
    "conditions": "Conditions as the registry names them (JSON list)",
    "interventions": "Intervention names (JSON list)",
    "countries": "Countries of the study's locations (JSON list)",
    "enrollment": "Enrollment (actual or estimated: enrollment_type)",
    "first_posted": "First posted on the registry", "last_update_posted": "Last update posted",
    "first_seen_at": "When the tracker first stored it",
    "last_changed_at": "When the tracker last stored a new version", **_LABELS,
}
_PAPER_COLUMNS = {
    "id": "Row id (publication_fts rowid)", "pmid": "PubMed id", "pmcid": "PubMed Central id",
    "doi": "DOI (lower case)", "title": "Title", "journal": "Journal",
    "pub_date": "Publication date (partial dates as given)",
    "phase": "Trial phase from the publication types",
    "deleted": "1 when PubMed deleted the citation",
    "index_date": "First indexed (PubMed Entrez date / Europe PMC)",
    "sources": "Listings it came from (pubmed, europepmc)",
    "trial_ids": "Trial registry ids the paper names (JSON list)", **_LABELS,
}
_ARRAY_FACETS = [{"array": c} for c in ("condition_groups", "cell_sources", "origins",
                                        "products")]


def metadata(database: str) -> dict[str, Any]:
    """Datasette metadata for the tracker's database called ``database`` (the file's stem)."""
    study = {"fts_table": "study_fts", "fts_pk": "id", "label_column": "title",
             "sort_desc": "first_posted"}
    paper = {"fts_table": "publication_fts", "fts_pk": "id", "label_column": "title",
             "sort_desc": "index_date"}
    tables: dict[str, Any] = {
        "studies_view": {
            **study, "title": "Studies",
            "description": "One row per registered MSC study (and the others the search "
                           "found): labels as lists; the search box searches titles, "
                           "summaries, conditions, interventions, keywords and MeSH terms.",
            "facets": ["phase", "status", *_ARRAY_FACETS, {"array": "countries"},
                       "msc_relevant", "msc_role"],
            "columns": _STUDY_COLUMNS,
        },
        "papers_view": {
            **paper, "title": "Papers",
            "description": "One row per paper (PubMed, Europe PMC): labels as lists, the "
                           "trial ids it names; the search box searches titles, abstracts, "
                           "keywords and MeSH terms.",
            "facets": ["phase", *_ARRAY_FACETS, "msc_relevant", "msc_role", "journal"],
            "columns": _PAPER_COLUMNS,
        },
        "changes_view": {
            "title": "Changes", "sort_desc": "seen_at",
            "description": "Every field change of every study: old and new value, the "
                           "registry's update date and when the tracker saw it.",
            "facets": ["field", "status", {"array": "condition_groups"}],
            "columns": {"field": "Which field changed", "old_value": "Before",
                        "new_value": "After (lists as JSON, dates ISO)",
                        "registry_date": "The registry's update date",
                        "seen_at": "When the tracker stored the new version"},
        },
        "labels_view": {
            "title": "Labels", "facets": ["kind", "family", "label"],
            "description": "One row per label of a study or paper.",
        },
        "links_view": {
            "title": "Papers and trials",
            "description": "Links between papers and trials, from either side: a paper "
                           "naming a trial (databank, title, abstract) or a registry "
                           "listing a paper (RESULT, BACKGROUND, DERIVED).",
            "facets": ["link_type", "found_in"],
        },
        "study": {**study, "description": "The stored studies (internal columns included)."},
        "publication": {**paper,
                        "description": "The stored papers (internal columns included)."},
        "study_country": {"facets": ["country"],
                          "description": "One row per study and location country."},
        "record_label": {"facets": ["kind", "family", "label"]},
    }
    return {
        "title": "MSC trial tracker",
        "description": "Mesenchymal stem cell trials and papers, labelled by condition, "
                       "phase, cell source, origin and product, with their history.",
        "databases": {database: {"tables": tables}},
    }


def write_metadata(path: Path, database: str) -> None:
    """Write ``metadata(database)`` to ``path`` as JSON."""
    path.write_text(json.dumps(metadata(database), indent=2) + "\n", encoding="utf-8")


def installed() -> bool:
    """Whether Datasette can be imported here."""
    try:
        import datasette  # noqa: F401
    except ImportError:
        return False
    return True


def serve(db: Path, *, port: int, open_browser: bool = False) -> int:
    """Run Datasette on ``db`` at http://127.0.0.1:``port`` (0: a free port) until stopped;
    returns its exit code. Raises ConfigError when Datasette is not installed."""
    if not installed():
        raise ConfigError(INSTALL)
    with tempfile.TemporaryDirectory(prefix="tracker-datasette-") as tmp:
        meta = Path(tmp) / "metadata.json"
        write_metadata(meta, db.stem)
        cmd = [sys.executable, "-m", "datasette", "serve", str(db), "--host", "127.0.0.1",
               "--port", str(port), "--metadata", str(meta),
               "--setting", "facet_time_limit_ms", "1000",
               "--setting", "sql_time_limit_ms", "5000"]
        if open_browser:
            cmd.append("--open")
        with subprocess.Popen(cmd) as proc:
            # SIGTERM (systemd, a test) stops Datasette too, then this returns.
            previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)
