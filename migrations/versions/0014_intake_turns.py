"""batches keep when the intake began checking them, so tenants take turns

The intake (api/intake/batch_intake.py) checks next a waiting batch of the tenant whose last
check began longest ago (or never): one tenant's twenty large files no longer hold
another's small one behind all of them (issue 28).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('batches', sa.Column('intake_started_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_batches_intake_turns', 'batches', ['tenant_id', 'intake_started_at'], unique=False,
                    postgresql_where=sa.text('intake_started_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_batches_intake_turns', table_name='batches',
                  postgresql_where=sa.text('intake_started_at IS NOT NULL'))
    op.drop_column('batches', 'intake_started_at')
