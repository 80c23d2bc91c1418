"""full-text index, countries, label foreign keys and readable views

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000

* ``study_country``: one row per study and (normalised) location country, for ``--country``.
  Filled from every stored study's raw record, parsed again (``study.countries`` is empty for
  rows stored before revision 0004); ``study.countries`` is filled too where it was empty.
* ``record_label.study_id`` / ``publication_id``: the record a label belongs to as a foreign
  key (``kind`` + ``record_id`` stay), filled from ``record_id``, indexed with the family and
  label: the label filters' EXISTS looks one record's labels up there (on the (family,
  label, kind) index it read every record with the label for each full-text match); they
  replace the (kind, record_id) index, which nothing reads any more.
* The full-text index (``db.search``): FTS5 ``study_fts`` / ``publication_fts`` on SQLite,
  tsvector tables with GIN indexes on PostgreSQL, built from every stored record.
* Views ``studies_view``, ``papers_view``, ``changes_view``, ``labels_view``, ``links_view``
  (``db.views``).
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_CHUNK = 500


def upgrade() -> None:
    op.create_table('study_country',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_id', 'country', name='uq_study_country')
    )
    with op.batch_alter_table('study_country', schema=None) as batch_op:
        batch_op.create_index('ix_study_country_country', ['country'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_country_study_id'), ['study_id'],
                              unique=False)

    with op.batch_alter_table('record_label', schema=None) as batch_op:
        batch_op.add_column(sa.Column('study_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('publication_id', sa.Integer(), nullable=True))
        batch_op.drop_index('ix_record_label_record')
        batch_op.create_index('ix_record_label_study', ['study_id', 'family', 'label'],
                              unique=False)
        batch_op.create_index('ix_record_label_publication',
                              ['publication_id', 'family', 'label'], unique=False)
        batch_op.create_foreign_key('fk_record_label_study_id', 'study', ['study_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_foreign_key('fk_record_label_publication_id', 'publication',
                                    ['publication_id'], ['id'], ondelete='CASCADE')

    conn = op.get_bind()
    conn.execute(sa.text(
        "UPDATE record_label SET study_id = record_id WHERE kind = 'study' "
        "AND record_id IN (SELECT id FROM study)"))
    conn.execute(sa.text(
        "UPDATE record_label SET publication_id = record_id WHERE kind = 'publication' "
        "AND record_id IN (SELECT id FROM publication)"))

    from db import search
    from db.views import create_views

    search.create_index(conn)
    parsed: dict[int, list[str] | None] = {}
    search.rebuild(conn, on_study=lambda sid, rec: parsed.__setitem__(
        sid, list(rec.countries) if rec is not None else None))
    _fill_countries(conn, parsed)
    create_views(conn, revision='0006')  # the views as this revision made them


def _as_list(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)):
        return orjson.loads(value) if value else []
    return list(value or [])


def _fill_countries(conn: Any, parsed: dict[int, list[str] | None]) -> None:
    """study_country from each study's parsed record (else its stored ``countries``), and
    ``study.countries`` where it was empty."""
    from db.upsert import country_names

    study = sa.table('study', sa.column('id', sa.Integer), sa.column('countries', sa.JSON))
    link = sa.table('study_country', sa.column('study_id', sa.Integer),
                    sa.column('country', sa.String))
    stored = {sid: _as_list(c) for sid, c in conn.execute(sa.select(study.c.id,
                                                                    study.c.countries))}
    rows: list[dict[str, Any]] = []
    fill: list[dict[str, Any]] = []
    for sid, have in stored.items():
        found = parsed.get(sid)
        if found and not have:
            fill.append({"sid": sid, "found": found})
        for name in country_names(found if found is not None else have):
            rows.append({"study_id": sid, "country": name})
    for i in range(0, len(rows), _CHUNK * 10):
        conn.execute(link.insert(), rows[i : i + _CHUNK * 10])
    if fill:
        conn.execute(study.update().where(study.c.id == sa.bindparam("sid")).values(
            countries=sa.bindparam("found", type_=sa.JSON)), fill)


def downgrade() -> None:
    from db import search
    from db.views import drop_views

    conn = op.get_bind()
    drop_views(conn)
    search.drop_index(conn)
    with op.batch_alter_table('record_label', schema=None) as batch_op:
        batch_op.drop_constraint('fk_record_label_publication_id', type_='foreignkey')
        batch_op.drop_constraint('fk_record_label_study_id', type_='foreignkey')
        batch_op.drop_index('ix_record_label_publication')
        batch_op.drop_index('ix_record_label_study')
        batch_op.create_index('ix_record_label_record', ['kind', 'record_id'], unique=False)
        batch_op.drop_column('publication_id')
        batch_op.drop_column('study_id')
    with op.batch_alter_table('study_country', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_country_study_id'))
        batch_op.drop_index('ix_study_country_country')
    op.drop_table('study_country')
