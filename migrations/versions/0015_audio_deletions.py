"""stored objects are deleted after the commit that released them, from a table of deletions

Retention and batch deletes used to delete objects from the store under the tenant's lock
and before their transaction committed: a failed delete or commit left rows naming
objects that were gone. Now they record the deletion; the sweeper works it off after the
commit, and a submit of the same bytes meanwhile cancels it (issue 28).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audio_deletions',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('requested_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('sha256'),
    )


def downgrade() -> None:
    op.drop_table('audio_deletions')
