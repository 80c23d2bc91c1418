"""the MSC role of every study and paper, and the minimally-manipulated flag

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:30:00.000000

``msc_role`` (tracker.role.ROLES: therapy, laboratory, manufacturing, endogenous, mention,
none) and ``minimally_manipulated`` on ``study`` and ``publication``, the role indexed for
``--role``; the readable views gain both columns. Rows stored before this revision keep NULL
until ``tracker classify`` labels them again from their stored raw records (no network).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

TABLES = ("study", "publication")


def upgrade() -> None:
    from db.views import create_views, drop_views

    conn = op.get_bind()
    drop_views(conn)  # SQLite's batch mode copies the tables; no view may name them meanwhile
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('msc_role', sa.String(length=16), nullable=True))
            batch_op.add_column(sa.Column('minimally_manipulated', sa.Boolean(), nullable=True))
            batch_op.create_index(f'ix_{table}_msc_role', ['msc_role'], unique=False)
    create_views(conn, revision='0007')


def downgrade() -> None:
    from db.views import create_views, drop_views

    conn = op.get_bind()
    drop_views(conn)
    for table in TABLES:
        # ALTER TABLE ... DROP COLUMN (SQLite 3.35+), never a table copy: dropping the old
        # study table in a copy would cascade to its labels, versions and changes.
        with op.batch_alter_table(table, schema=None, recreate="never") as batch_op:
            batch_op.drop_index(f'ix_{table}_msc_role')
            batch_op.drop_column('minimally_manipulated')
            batch_op.drop_column('msc_role')
    create_views(conn, revision='0006')
