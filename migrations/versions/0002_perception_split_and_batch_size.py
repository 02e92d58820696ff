"""perception rounds split into CPU and GPU steps; tool calls record their batch size

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A round's first step is now its CPU step; one left over from before the split runs
    # as such and hands its GPU calls to a new GPU step.
    op.execute("UPDATE steps SET kind = 'perceive_cpu' WHERE kind = 'perceive'")
    op.add_column('tool_calls', sa.Column('batch_size', sa.Integer(), server_default='1', nullable=False))


def downgrade() -> None:
    op.drop_column('tool_calls', 'batch_size')
    op.execute("UPDATE steps SET kind = 'perceive' WHERE kind IN ('perceive_cpu', 'perceive_gpu')")
