"""shared state: the token buckets every broker process shares (rate limits)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('broker_bucket',
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('updated', sa.Float(), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('broker_bucket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broker_bucket_updated'), ['updated'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('broker_bucket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broker_bucket_updated'))
    op.drop_table('broker_bucket')
