"""cosigned checkpoints: the published checkpoints with their witnesses' cosignatures

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cockpit_cosigned_checkpoint',
    sa.Column('tree_size', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('cosignatures', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('tree_size')
    )


def downgrade() -> None:
    op.drop_table('cockpit_cosigned_checkpoint')
