"""jobs keep how their answer was decided

The crosscheck pipeline (issue 18) decides an answer in more ways than one agent's pick:
the audio models' agreement (the gate), or the text-side answer against the audio model's
own after final listening, arbitrated by the reasoner when they differ. `decision` holds
which, with every answer it weighed (None: the answering agent's pick, as before).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('decision', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'decision')
