"""previews: held proofs awaiting the citizen's release; consents may ask for a preview

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 03:50:00
"""

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes  # the AutoString columns below (mypy sees the submodule)
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('broker_preview',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('citizen_ref', sa.String(length=64), nullable=False),
    sa.Column('subject_masked', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('proof_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('consent_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sealed', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('broker_preview', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broker_preview_citizen_ref'),
                              ['citizen_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_broker_preview_expires_at'),
                              ['expires_at'], unique=False)

    with op.batch_alter_table('broker_consent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview', sa.Boolean(),
                                      server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('broker_consent', schema=None) as batch_op:
        batch_op.drop_column('preview')

    with op.batch_alter_table('broker_preview', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broker_preview_expires_at'))
        batch_op.drop_index(batch_op.f('ix_broker_preview_citizen_ref'))

    op.drop_table('broker_preview')
