"""protocol and sealed outbox: a transfer row keeps the protocol entry (pseudonyms only); the
record with IdNrs is sealed while pending and destroyed at delivery (decision 0031)

Rows written before this revision keep their plain record and have no protocol entry; the
partial index ``ix_broker_transfer_unsealed`` finds them, and the broker seals them (delivered:
protocol entry only; pending: sealed record) at start-up and in ``einmal broker shred``, which
hold the keys this migration has not got.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

_UNSEALED = sa.text('protocol IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('broker_transfer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protocol', sa.LargeBinary(), nullable=True))
        batch_op.alter_column('record', existing_type=sa.LargeBinary(), nullable=True)
    op.create_index('ix_broker_transfer_unsealed', 'broker_transfer', ['seq'], unique=False,
                    sqlite_where=_UNSEALED, postgresql_where=_UNSEALED)


def downgrade() -> None:
    connection = op.get_bind()
    sealed_pending = connection.execute(sa.text(
        "SELECT count(*) FROM broker_transfer WHERE delivered_at IS NULL "
        "AND protocol IS NOT NULL")).scalar_one()
    if sealed_pending:
        msg = (f"{sealed_pending} sealed transfer records are not delivered yet: the older "
               "version cannot open them. Let the broker deliver its outbox, then downgrade.")
        raise RuntimeError(msg)
    # a delivered row keeps its protocol entry where the older version expects the record
    # (it never reads a delivered record again)
    connection.execute(sa.text(
        "UPDATE broker_transfer SET record = protocol WHERE record IS NULL"))
    op.drop_index('ix_broker_transfer_unsealed', table_name='broker_transfer')
    with op.batch_alter_table('broker_transfer', schema=None) as batch_op:
        batch_op.alter_column('record', existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column('protocol')
