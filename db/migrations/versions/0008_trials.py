"""trials: registrations grouped into trials, editors' merge decisions, the parsing source

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:10:00.000000

* ``trial_member``: the trial (lowest study id of its group) each registration belongs to and
  the evidence that joined it (``db.trials.regroup`` fills it after every update, import,
  merge and unmerge; this migration groups the stored registrations once);
* ``trial_decision``: ``tracker merge`` / ``tracker unmerge`` decisions, by registry id;
* ``study.source``: the source whose parser reads a row's raw record when it is not the
  registry's own (an ICTRP export's ChiCTR trial). NULL for every row stored before.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'trial_member',
        sa.Column('study_id', sa.Integer(), nullable=False),
        sa.Column('trial_id', sa.Integer(), nullable=False),
        sa.Column('evidence', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['study_id'], ['study.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('study_id'),
    )
    op.create_index('ix_trial_member_trial_id', 'trial_member', ['trial_id'], unique=False)
    op.create_table(
        'trial_decision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('registry', sa.String(length=16), nullable=False),
        sa.Column('registry_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('other_registry', sa.String(length=16), nullable=True),
        sa.Column('other_registry_id', sqlmodel.sql.sqltypes.AutoString(length=64),
                  nullable=True),
        sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=True))
    from db.trials import regroup

    regroup(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table('study', schema=None, recreate="never") as batch_op:
        batch_op.drop_column('source')
    op.drop_table('trial_decision')
    op.drop_index('ix_trial_member_trial_id', table_name='trial_member')
    op.drop_table('trial_member')
