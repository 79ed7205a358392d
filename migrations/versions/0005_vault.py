"""vault: data keys wrapped by the master key, encrypted collected batches

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 11:30:00
"""

from alembic import op
import sqlalchemy as sa
import portal.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

LIVE = 'destroyed_at IS NULL'


def upgrade() -> None:
    op.create_table('data_key',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=16), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('destroyed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('destroyed_at IS NOT NULL OR length(wrapped_key) > 0', name=op.f('ck_data_key_live_has_key')),
    sa.CheckConstraint('destroyed_at IS NULL OR length(wrapped_key) = 0', name=op.f('ck_data_key_destroyed_is_empty')),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_data_key_category_key_category')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_data_key_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_data_key'))
    )
    # One live key per person and category; destroyed keys stay as the record of erasure.
    op.create_index('uq_data_key_live_person_id_category_key', 'data_key',
                    ['person_id', 'category_key'], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))

    op.create_table('collected_batch',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('data_key_id', sa.String(length=36), nullable=False),
    sa.Column('collector_id', sa.Integer(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('collected_from', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('collected_to', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('dss_level', sa.SmallInteger(), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('compressed_size', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint('collected_from <= collected_to', name=op.f('ck_collected_batch_window_ordered')),
    sa.CheckConstraint('compressed_size >= 0', name=op.f('ck_collected_batch_size_not_negative')),
    sa.CheckConstraint('dss_level BETWEEN 1 AND 4', name=op.f('ck_collected_batch_dss_level')),
    sa.CheckConstraint('event_count > 0', name=op.f('ck_collected_batch_has_events')),
    sa.CheckConstraint('idempotency_key IS NULL OR collector_id IS NOT NULL', name=op.f('ck_collected_batch_idempotency_needs_collector')),
    sa.CheckConstraint('length(nonce) = 12', name=op.f('ck_collected_batch_nonce_96_bits')),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_collected_batch_category_key_category')),
    sa.ForeignKeyConstraint(['collector_id'], ['collector.id'], name=op.f('fk_collected_batch_collector_id_collector')),
    sa.ForeignKeyConstraint(['data_key_id'], ['data_key.id'], name=op.f('fk_collected_batch_data_key_id_data_key')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_collected_batch_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collected_batch')),
    sa.UniqueConstraint('collector_id', 'idempotency_key', name=op.f('uq_collected_batch_collector_id')),
    sa.UniqueConstraint('public_id', name=op.f('uq_collected_batch_public_id'))
    )
    with op.batch_alter_table('collected_batch', schema=None) as batch_op:
        batch_op.create_index('ix_collected_batch_category_key_collected_to', ['category_key', 'collected_to'], unique=False)
        batch_op.create_index('ix_collected_batch_data_key_id', ['data_key_id'], unique=False)
        batch_op.create_index('ix_collected_batch_person_id_category_key_collected_to', ['person_id', 'category_key', 'collected_to'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        # Ciphertext does not compress: spare PostgreSQL the attempt on every TOASTed value.
        op.execute('ALTER TABLE collected_batch ALTER COLUMN ciphertext SET STORAGE EXTERNAL')


def downgrade() -> None:
    with op.batch_alter_table('collected_batch', schema=None) as batch_op:
        batch_op.drop_index('ix_collected_batch_person_id_category_key_collected_to')
        batch_op.drop_index('ix_collected_batch_data_key_id')
        batch_op.drop_index('ix_collected_batch_category_key_collected_to')
    op.drop_table('collected_batch')
    op.drop_index('uq_data_key_live_person_id_category_key', table_name='data_key')
    op.drop_table('data_key')
