"""batches made from an uploaded file are validated off the request path

`input_files` holds submission files (`POST /v1/files`); a batch made from one is
`validating` until the intake (api/intake/batch_intake.py) has checked it, with the request's
parameters in `intake` meanwhile and, if refused, every bad line in `errors`. The intake
checks a batch under a lease (`intake_claim`, `intake_claimed_until`), not a transaction.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('input_files',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('filename', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('bytes', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_input_files_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_input_files')),
    sa.UniqueConstraint('tenant_id', 'purpose', 'sha256', name=op.f('uq_input_files_tenant_id'))
    )
    op.add_column('batches', sa.Column('input_file_id', sa.Uuid(), nullable=True))
    op.add_column('batches', sa.Column('intake', sa.JSON(), nullable=True))
    op.add_column('batches', sa.Column('errors', sa.JSON(), nullable=True))
    op.add_column('batches', sa.Column('intake_claim', sa.Uuid(), nullable=True))
    op.add_column('batches', sa.Column('intake_claimed_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('batches', sa.Column('intake_attempts', sa.Integer(), server_default=sa.text('0'),
                                       nullable=False))
    op.create_foreign_key(op.f('fk_batches_input_file_id_input_files'), 'batches', 'input_files',
                          ['input_file_id'], ['id'])
    op.create_index('ix_batches_validating', 'batches', ['created_at'], unique=False,
                    postgresql_where=sa.text("status = 'validating'"))


def downgrade() -> None:
    op.drop_index('ix_batches_validating', table_name='batches', postgresql_where=sa.text("status = 'validating'"))
    op.drop_constraint(op.f('fk_batches_input_file_id_input_files'), 'batches', type_='foreignkey')
    op.drop_column('batches', 'intake_attempts')
    op.drop_column('batches', 'intake_claimed_until')
    op.drop_column('batches', 'intake_claim')
    op.drop_column('batches', 'errors')
    op.drop_column('batches', 'intake')
    op.drop_column('batches', 'input_file_id')
    op.drop_table('input_files')
