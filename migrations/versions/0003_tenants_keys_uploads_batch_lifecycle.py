"""tenants, hashed API keys and uploads; batches gain owner, idempotency key, expiry, cancel

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'tenants',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('audio_root', sa.String(length=2000), nullable=True),
        sa.Column('rate_limit_per_minute', sa.Integer(), nullable=False),
        sa.Column('max_queued_items', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants')),
        sa.UniqueConstraint('name', name=op.f('uq_tenants_name')),
    )
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('key_sha256', sa.String(length=64), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_api_keys_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('key_sha256', name=op.f('uq_api_keys_key_sha256')),
    )
    op.create_index(op.f('ix_api_keys_tenant_id'), 'api_keys', ['tenant_id'], unique=False)
    op.create_table(
        'uploads',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('audio_id', sa.BigInteger(), nullable=False),
        sa.Column('filename', sa.String(length=500), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['audio_id'], ['audio_assets.id'], name=op.f('fk_uploads_audio_id_audio_assets')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_uploads_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_uploads')),
    )
    op.create_index(op.f('ix_uploads_tenant_id'), 'uploads', ['tenant_id'], unique=False)

    op.add_column('batches', sa.Column('tenant_id', sa.Uuid(), nullable=True))
    op.add_column('batches', sa.Column('batch_metadata', sa.JSON(), server_default='{}', nullable=False))
    op.add_column('batches', sa.Column('idempotency_key', sa.String(length=200), nullable=True))
    op.add_column('batches', sa.Column('request_sha256', sa.String(length=64), nullable=True))
    op.add_column('batches', sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('batches', sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('batches', sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
    op.alter_column('batches', 'batch_metadata', server_default=None)
    op.create_foreign_key(op.f('fk_batches_tenant_id_tenants'), 'batches', 'tenants', ['tenant_id'], ['id'])
    op.create_index(op.f('ix_batches_tenant_id'), 'batches', ['tenant_id'], unique=False)
    op.create_unique_constraint(op.f('uq_batches_tenant_id'), 'batches', ['tenant_id', 'idempotency_key'])


def downgrade() -> None:
    op.drop_constraint(op.f('uq_batches_tenant_id'), 'batches', type_='unique')
    op.drop_index(op.f('ix_batches_tenant_id'), table_name='batches')
    op.drop_constraint(op.f('fk_batches_tenant_id_tenants'), 'batches', type_='foreignkey')
    for column in ('ended_at', 'cancelled_at', 'expires_at', 'request_sha256', 'idempotency_key',
                   'batch_metadata', 'tenant_id'):
        op.drop_column('batches', column)
    op.drop_index(op.f('ix_uploads_tenant_id'), table_name='uploads')
    op.drop_table('uploads')
    op.drop_index(op.f('ix_api_keys_tenant_id'), table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('tenants')
