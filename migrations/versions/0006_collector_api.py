"""collector API: acknowledgements of consent changes by collectors

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 14:00:00
"""

from alembic import op
import sqlalchemy as sa
import portal.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('collection_acknowledgement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('collector_id', sa.Integer(), nullable=False),
    sa.Column('change_event_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('action', sa.Enum('stopped', 'resumed', name='collectionaction', native_enum=False, length=16, create_constraint=True), nullable=False),
    sa.Column('last_event_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_collection_acknowledgement_category_key_category')),
    sa.ForeignKeyConstraint(['change_event_id'], ['consent_event.id'], name=op.f('fk_collection_acknowledgement_change_event_id_consent_event')),
    sa.ForeignKeyConstraint(['collector_id'], ['collector.id'], name=op.f('fk_collection_acknowledgement_collector_id_collector')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_collection_acknowledgement_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_acknowledgement')),
    sa.UniqueConstraint('collector_id', 'change_event_id', name=op.f('uq_collection_acknowledgement_collector_id'))
    )
    with op.batch_alter_table('collection_acknowledgement', schema=None) as batch_op:
        batch_op.create_index('ix_collection_acknowledgement_person_id_category_key', ['person_id', 'category_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('collection_acknowledgement', schema=None) as batch_op:
        batch_op.drop_index('ix_collection_acknowledgement_person_id_category_key')
    op.drop_table('collection_acknowledgement')
