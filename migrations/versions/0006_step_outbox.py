"""the step outbox: each step's message is part of its durable state; and each attempt audited

`send_due_at` is set in the transaction that makes a step queued (its insert, a retry, a
lapsed lease) and cleared when its message is handed to the broker; `sent_seq` numbers
every message sent (and `sent_priority` says which of the queue's lanes it went to), so
the sweeper can tell a message a consumer has passed over (lost)
from one still waiting behind a backlog (workers/runtime/outbox.py).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE step_message_seq")
    op.add_column('steps', sa.Column('send_due_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=True))
    op.add_column('steps', sa.Column('sent_seq', sa.BigInteger(), nullable=True))
    op.add_column('steps', sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('steps', sa.Column('sent_priority', sa.SmallInteger(), nullable=True))
    op.add_column('steps', sa.Column('sends', sa.Integer(), server_default='0', nullable=False))
    op.add_column('steps', sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('steps', sa.Column('claimed_seq', sa.BigInteger(), nullable=True))
    # Rows from before the outbox were sent when they were made; those still queued get
    # one more message from the relay, as nothing numbered theirs.
    op.execute("UPDATE steps SET send_due_at = NULL, sent_at = updated_at, sends = 1")
    op.execute("UPDATE steps SET send_due_at = now() WHERE status = 'queued'")
    op.create_index('ix_steps_send_due_at', 'steps', ['send_due_at'],
                    postgresql_where=sa.text("send_due_at IS NOT NULL"))
    op.create_index('ix_steps_queued_kind_sent_seq', 'steps', ['kind', 'sent_seq'],
                    postgresql_where=sa.text("status = 'queued'"))
    op.create_index('ix_steps_claimed_at', 'steps', ['claimed_at'])
    # Every execution of a step, for the audit (models/step_attempt.py).
    op.create_table(
        'step_attempts',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('step_id', sa.BigInteger(), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('worker', sa.String(300), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['step_id'], ['steps.id'], name=op.f('fk_step_attempts_step_id_steps')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_step_attempts')),
        sa.UniqueConstraint('step_id', 'attempt', name=op.f('uq_step_attempts_step_id')),
    )
    op.create_index('ix_step_attempts_step_id', 'step_attempts', ['step_id'])


def downgrade() -> None:
    op.drop_index('ix_step_attempts_step_id', table_name='step_attempts')
    op.drop_table('step_attempts')
    op.drop_index('ix_steps_claimed_at', table_name='steps')
    op.drop_index('ix_steps_queued_kind_sent_seq', table_name='steps')
    op.drop_index('ix_steps_send_due_at', table_name='steps')
    for column in ('claimed_seq', 'claimed_at', 'sends', 'sent_priority', 'sent_at', 'sent_seq', 'send_due_at'):
        op.drop_column('steps', column)
    op.execute("DROP SEQUENCE step_message_seq")
