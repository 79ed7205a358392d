"""consent ledger: an index for reconstructing each person's state as of a moment

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 11:12:00
"""

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # HR's "as of" filter looks up, per person and category, the last event at or before a
    # moment; without this index PostgreSQL sorts the whole ledger for it.
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.create_index('ix_consent_event_person_id_category_key_occurred_at',
                              ['person_id', 'category_key', 'occurred_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_event_person_id_category_key_occurred_at')
