"""protocol subjects: the keyed pseudonyms each protocol entry names, one row each - the broker's
source interface finds a citizen's entries by them (broker/source.py, decision 0035)

Existing protocol entries get their rows here (read from the entry's JSON, which names the
pseudonyms); rows from before 0004 get theirs when the broker seals them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 12:00:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    subject = op.create_table(
        'broker_protocol_subject',
        sa.Column('ref', sa.String(length=64), nullable=False),
        sa.Column('transfer_id', sa.String(length=36), nullable=False),
        sa.Column('relation', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint('ref', 'transfer_id'),
    )
    op.create_index('ix_broker_protocol_subject_transfer', 'broker_protocol_subject',
                    ['transfer_id'], unique=False)
    connection = op.get_bind()
    transfer = sa.table('broker_transfer', sa.column('seq', sa.Integer),
                        sa.column('id', sa.String), sa.column('protocol', sa.LargeBinary))
    after = 0
    while True:
        rows = connection.execute(
            sa.select(transfer.c.seq, transfer.c.id, transfer.c.protocol)
            .where(transfer.c.seq > after, transfer.c.protocol.is_not(None))
            .order_by(transfer.c.seq).limit(_BATCH)).all()
        if not rows:
            return
        values: list[dict[str, str]] = []
        for row in rows:
            entry = json.loads(bytes(row.protocol))
            found = {c['ref']: c['relation'] for c in entry.get('concerned', ())}
            found.setdefault(entry['subject'], 'self')
            values.extend({'ref': ref, 'transfer_id': row.id, 'relation': relation}
                          for ref, relation in found.items())
        if values:
            connection.execute(sa.insert(subject), values)
        after = rows[-1].seq


def downgrade() -> None:
    op.drop_index('ix_broker_protocol_subject_transfer', table_name='broker_protocol_subject')
    op.drop_table('broker_protocol_subject')
