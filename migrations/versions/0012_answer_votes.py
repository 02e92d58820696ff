"""jobs keep the vote of their answer samples

With several answer samples (self-consistency, issue 18) a job's answer is their vote:
`vote` holds each answer's votes, the margin and the dissent (None: one sample).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('vote', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'vote')
