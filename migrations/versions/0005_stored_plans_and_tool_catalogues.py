"""a step stores what it will do; a job names the tool catalogue its agents are shown

A perception step's calls (tool, args, index, model) are written when its row is inserted,
and a job's tool catalogue (names, descriptions, schemas, models) when it is submitted,
so no worker re-plans a round or rebuilds a prompt from its own settings. Rows from
before this revision have neither (NULL) and are planned as they were.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tool_catalogues',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('tools', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_tool_catalogues'))
    )
    op.add_column('jobs', sa.Column('catalogue_version', sa.String(length=64), nullable=True))
    op.create_foreign_key(op.f('fk_jobs_catalogue_version_tool_catalogues'), 'jobs', 'tool_catalogues',
                          ['catalogue_version'], ['version'])
    op.add_column('steps', sa.Column('calls', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('steps', 'calls')
    op.drop_constraint(op.f('fk_jobs_catalogue_version_tool_catalogues'), 'jobs', type_='foreignkey')
    op.drop_column('jobs', 'catalogue_version')
    op.drop_table('tool_catalogues')
