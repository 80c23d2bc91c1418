"""read-side indexes: studies by registry id alone, and by the run that last changed them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:20:00.000000

Both turned full scans of ``study`` into lookups (benchmarks/bench_reading.py):

* ``study.registry_id`` on its own: the unique index is (registry, registry_id), so
  ``registry_id IN (...)`` / ``= ?`` scanned the table: the digest's snippets, ranked changes
  and results-paper checks, ``show``, ``show --timeline`` and ``show --raw``.
* ``study.last_changed_run_id``: "changed in the last update" (``report --last-run``,
  ``studies --last-run``) scanned the table; ``first_seen_run_id`` already had its index.
"""

from __future__ import annotations

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.create_index('ix_study_registry_id', ['registry_id'], unique=False)
        batch_op.create_index('ix_study_last_changed_run', ['last_changed_run_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_index('ix_study_last_changed_run')
        batch_op.drop_index('ix_study_registry_id')
