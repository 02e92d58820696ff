"""step claims: a partial index holding only the queues' windows

The window of a queue is its steps whose message is out and not yet claimed (queued,
numbered, nothing due). GPU batch-mates are picked from it in message order and locked in
the same statement, skipping rows another worker holds (workers/runtime/step_claim.py); the fair
dispatcher counts it (workers/runtime/fair_dispatch.py). This index holds those rows alone, a
window (64 by default) per step kind, so neither reads the backlog waiting behind it, nor
the retries due, however many there are.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

WINDOW = "status = 'queued' AND send_due_at IS NULL AND sent_seq IS NOT NULL"


def upgrade() -> None:
    op.create_index('ix_steps_window_kind_sent_seq', 'steps', ['kind', 'sent_seq'],
                    postgresql_where=sa.text(WINDOW))


def downgrade() -> None:
    op.drop_index('ix_steps_window_kind_sent_seq', table_name='steps')
