"""Readable views over the tables, for Datasette, sqlite-utils, ``tracker export`` and SQL.

* ``studies_view``: one row per study, without the stored raw record, its content hash, the
  rules fingerprint, the run ids and the classifier's evidence; labels as JSON lists
  (Datasette facets them with ``_facet_array``).
* ``papers_view``: one row per paper, the same way, with the trial ids it names as a list.
* ``changes_view``: each field change with its study's id, title and labels.
* ``labels_view``: one row per label, with the study's registry id or the paper's PMID / DOI.
* ``links_view``: papers and trials linked from either side (a paper naming a trial, a
  registry listing a paper), with the study's and the paper's row ids where stored.

Views are created by migration 0006. A later migration that rebuilds a table in SQLite batch
mode (a table copy and rename) must ``drop_views`` first and ``create_views`` after: SQLite
refuses to rename a table while a view names a table that does not exist.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

_STUDY_COLUMNS = (
    "id", "registry", "registry_id", "title", "official_title", "acronym", "phase", "status",
    "why_stopped", "study_type", "conditions", "condition_groups", "cell_sources", "origins",
    "products", "msc_relevant", "msc_role", "minimally_manipulated", "relevance_reason",
    "interventions", "keywords", "mesh_terms",
    "countries", "enrollment", "enrollment_type", "sponsor", "sponsor_class", "first_posted",
    "last_update_posted", "start_date", "primary_completion_date", "completion_date",
    "has_results", "results_first_posted", "brief_summary", "url", "first_seen_at",
    "last_changed_at",
)
_PAPER_COLUMNS = (
    "id", "pmid", "pmcid", "doi", "title", "journal", "pub_date", "pub_year",
    "publication_types", "is_preprint", "deleted", "phase", "msc_relevant", "msc_role",
    "relevance_reason",
    "condition_groups", "cell_sources", "origins", "products", "keywords", "mesh_terms",
    "authors", "abstract", "index_date", "sources", "url", "first_seen_at", "last_changed_at",
)


def _trial_ids(dialect: str) -> str:
    if dialect == "sqlite":
        return ("(SELECT json_group_array(registry_id) FROM (SELECT DISTINCT t.registry_id "
                "FROM publication_trial t WHERE t.publication_id = p.id ORDER BY "
                "t.registry_id))")
    return ("(SELECT COALESCE(json_agg(DISTINCT t.registry_id ORDER BY t.registry_id), "
            "'[]'::json) FROM publication_trial t WHERE t.publication_id = p.id)")


# Columns added after revision 0006 created the views, with the revision that added them:
# migration 0006 creates the views without them, and 0007 creates them again with them.
_LATER = {"msc_role": "0007", "minimally_manipulated": "0007"}


def view_sql(dialect: str, revision: str | None = None) -> dict[str, str]:
    """The SELECT of each view on ``dialect``, by view name, as of schema ``revision``
    (default: the newest)."""
    def cols(names: tuple[str, ...]) -> list[str]:
        return [c for c in names if revision is None or _LATER.get(c, "") <= revision]

    return {
        "studies_view": f"SELECT {', '.join('s.' + c for c in cols(_STUDY_COLUMNS))} "
                        "FROM study s",
        "papers_view": f"SELECT {', '.join('p.' + c for c in cols(_PAPER_COLUMNS))}, "
                       f"{_trial_ids(dialect)} AS trial_ids FROM publication p",
        "changes_view": (
            "SELECT c.id, s.registry, s.registry_id, s.title, c.field, c.old_value, "
            "c.new_value, c.registry_date, c.changed_at AS seen_at, s.phase, s.status, "
            "s.condition_groups, s.msc_relevant, s.url, c.study_id "
            "FROM study_change c JOIN study s ON s.id = c.study_id"),
        "labels_view": (
            "SELECT l.id, l.kind, s.registry_id, p.pmid, p.doi, l.family, l.label, "
            "l.study_id, l.publication_id FROM record_label l "
            "LEFT JOIN study s ON s.id = l.study_id "
            "LEFT JOIN publication p ON p.id = l.publication_id"),
        "links_view": (
            "SELECT t.registry, t.registry_id, p.pmid, p.doi, p.title AS paper_title, "
            "t.link_type, 'paper ' || t.found_in AS found_in, t.evidence, s.id AS study_id, "
            "t.publication_id FROM publication_trial t "
            "JOIN publication p ON p.id = t.publication_id "
            "LEFT JOIN study s ON s.registry = t.registry AND s.registry_id = t.registry_id "
            "UNION ALL "
            "SELECT s.registry, s.registry_id, r.pmid, p.doi, COALESCE(p.title, r.citation), "
            "LOWER(COALESCE(r.type, 'reference')), s.registry || ' references', r.citation, "
            "s.id, p.id FROM study_reference r JOIN study s ON s.id = r.study_id "
            "LEFT JOIN publication p ON p.pmid = r.pmid"),
    }


VIEWS = tuple(view_sql("sqlite"))


def create_views(conn: Connection, revision: str | None = None) -> None:
    """Create (or replace) every view, as of schema ``revision`` (default: the newest)."""
    drop_views(conn)
    for name, sql in view_sql(conn.dialect.name, revision).items():
        conn.exec_driver_sql(f"CREATE VIEW {name} AS {sql}")


def drop_views(conn: Connection) -> None:
    """Drop every view (the tables are untouched)."""
    for name in VIEWS:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {name}")
