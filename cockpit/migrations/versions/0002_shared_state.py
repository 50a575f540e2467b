"""shared state: web sessions (key/value with expiry) and token buckets every cockpit process shares

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 18:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cockpit_kv',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('cockpit_kv', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cockpit_kv_expires_at'), ['expires_at'], unique=False)
    op.create_table('cockpit_bucket',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('updated', sa.Float(), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('cockpit_bucket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cockpit_bucket_updated'), ['updated'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cockpit_bucket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cockpit_bucket_updated'))
    op.drop_table('cockpit_bucket')
    with op.batch_alter_table('cockpit_kv', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cockpit_kv_expires_at'))
    op.drop_table('cockpit_kv')
