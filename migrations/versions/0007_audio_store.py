"""the service-owned audio store: an asset is a stored object, readable by the tenants granted it

Assets were rows pointing at the first submitter's file, shared by every tenant with the
same bytes. From this revision an asset is an object in the service's content-addressed
store (storage/audio_store.py); `audio_grants` says which tenant may read it; a job keeps
the name its submitter gave the audio (`audio_name`); a tenant has a storage quota.
Rows made before keep their path as `legacy_path`, which nothing opens: their objects
are not in the store, so their unfinished jobs fail with that reason.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('audio_assets', 'path', new_column_name='legacy_path', nullable=True)
    op.create_table('audio_grants',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('audio_id', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['audio_id'], ['audio_assets.id'], name=op.f('fk_audio_grants_audio_id_audio_assets')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_audio_grants_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audio_grants')),
    sa.UniqueConstraint('tenant_id', 'audio_id', name=op.f('uq_audio_grants_tenant_id'),
                        postgresql_nulls_not_distinct=True)
    )
    op.create_index('ix_audio_grants_audio_id', 'audio_grants', ['audio_id'])
    # What tenants could read before: the assets their batches' jobs and their uploads use.
    op.execute("""
        INSERT INTO audio_grants (tenant_id, audio_id)
        SELECT DISTINCT b.tenant_id, j.audio_id FROM jobs j JOIN batches b ON b.id = j.batch_id
        UNION SELECT tenant_id, audio_id FROM uploads
        ON CONFLICT DO NOTHING
    """)
    op.add_column('jobs', sa.Column('audio_name', sa.String(length=1000), nullable=True))
    op.add_column('tenants', sa.Column('max_stored_bytes', sa.BigInteger(), nullable=False,
                                       server_default=str(100 * 1024**3)))
    op.alter_column('tenants', 'max_stored_bytes', server_default=None)
    # Retention looks up the jobs and uploads still using an object.
    op.create_index('ix_jobs_audio_id', 'jobs', ['audio_id'])
    op.create_index('ix_uploads_audio_id', 'uploads', ['audio_id'])


def downgrade() -> None:
    op.drop_index('ix_uploads_audio_id', 'uploads')
    op.drop_index('ix_jobs_audio_id', 'jobs')
    op.drop_column('tenants', 'max_stored_bytes')
    op.drop_column('jobs', 'audio_name')
    op.drop_index('ix_audio_grants_audio_id', 'audio_grants')
    op.drop_table('audio_grants')
    op.execute("UPDATE audio_assets SET legacy_path = '' WHERE legacy_path IS NULL")
    op.alter_column('audio_assets', 'legacy_path', new_column_name='path', nullable=False)
