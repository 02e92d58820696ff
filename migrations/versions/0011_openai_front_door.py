"""batches record which API made them, and when they began running

`interface` says how a batch is shown: ours (`native`), the OpenAI Batch API's
(`batch_api`), or a chat completion's batch of one (`chat`, not listed: the listing's
index leaves them out). `in_progress_at` is the OpenAI batch object's timestamp of that
name. Deleting a submission file (DELETE /v1/files/{id}) leaves its batches, unlinked.

A job that answers or errors notifies channel `agr_job_ended` with its id, delivered when
its transaction commits: a held chat call (api/front_door/job_end_listener.py) wakes at once instead
of on its next poll. Cancel and expiry, which end thousands of jobs in one statement,
notify nothing; a held call sees those on its next poll.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


JOB_ENDED_FUNCTION = """
CREATE FUNCTION agr_notify_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agr_job_ended', NEW.id::text);
    RETURN NULL;
END $$
"""
JOB_ENDED_TRIGGER = """
CREATE TRIGGER jobs_notify_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
WHEN (NEW.status IN ('succeeded', 'errored') AND OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION agr_notify_job_ended()
"""


def upgrade() -> None:
    op.execute(JOB_ENDED_FUNCTION)
    op.execute(JOB_ENDED_TRIGGER)
    op.add_column('batches', sa.Column('interface', sa.String(length=20), server_default='native', nullable=False))
    op.add_column('batches', sa.Column('in_progress_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_index('ix_batches_tenant_id_created_at_id', table_name='batches')
    op.create_index('ix_batches_listed', 'batches', ['tenant_id', 'created_at', 'id'], unique=False,
                    postgresql_where=sa.text("interface <> 'chat'"))
    op.drop_constraint('fk_batches_input_file_id_input_files', 'batches', type_='foreignkey')
    op.create_foreign_key('fk_batches_input_file_id_input_files', 'batches', 'input_files',
                          ['input_file_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_notify_ended ON jobs")
    op.execute("DROP FUNCTION agr_notify_job_ended()")
    op.drop_constraint('fk_batches_input_file_id_input_files', 'batches', type_='foreignkey')
    op.create_foreign_key('fk_batches_input_file_id_input_files', 'batches', 'input_files',
                          ['input_file_id'], ['id'])
    op.drop_index('ix_batches_listed', table_name='batches', postgresql_where=sa.text("interface <> 'chat'"))
    op.create_index('ix_batches_tenant_id_created_at_id', 'batches', ['tenant_id', 'created_at', 'id'], unique=False)
    op.drop_column('batches', 'in_progress_at')
    op.drop_column('batches', 'interface')
