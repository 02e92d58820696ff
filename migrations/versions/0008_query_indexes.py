"""indexes for the API's hot reads: jobs(batch_id, status), batches(tenant_id, created_at, id)

The console polls a batch's status every 2 s and the listing of batches with it; both
count a batch's jobs by status. With only jobs(batch_id) (and the unique (batch_id,
custom_id)) that count read every job row of the batch from the heap; on jobs(batch_id,
status) it is an index-only scan, and a page of batches is one aggregate over it. Jobs of
one status (the error file, `?status=` pages) are found on it too. A tenant's listing
(newest first, keyset paging on (created_at, id)) walks batches(tenant_id, created_at, id)
instead of sorting all of the tenant's batches for every page.

Dropped, because another index starts with the same column and serves every lookup they
did: ix_jobs_batch_id (the unique (batch_id, custom_id) and the new index), and
ix_batches_tenant_id (the unique (tenant_id, idempotency_key) and the new index). Each
write to jobs now maintains as many indexes as before.

The indexes are built in the migration's transaction: writes to jobs wait for the build
(about a second per million jobs).

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_batch_id_status', 'jobs', ['batch_id', 'status'])
    op.drop_index('ix_jobs_batch_id', table_name='jobs')
    op.create_index('ix_batches_tenant_id_created_at_id', 'batches', ['tenant_id', 'created_at', 'id'])
    op.drop_index('ix_batches_tenant_id', table_name='batches')


def downgrade() -> None:
    op.create_index('ix_batches_tenant_id', 'batches', ['tenant_id'])
    op.drop_index('ix_batches_tenant_id_created_at_id', table_name='batches')
    op.create_index('ix_jobs_batch_id', 'jobs', ['batch_id'])
    op.drop_index('ix_jobs_batch_id_status', table_name='jobs')
