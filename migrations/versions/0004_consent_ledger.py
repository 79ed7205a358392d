"""consent ledger: hash-chained events (append-only), current state, collectors, webhook outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:10:00
"""

from alembic import op
import sqlalchemy as sa
import portal.db
from portal.db import append_only_ddl, drop_append_only_ddl


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

STATES = ('ConsentGiven', 'ConsentWithdrawn', 'ConsentRefused', 'ConsentExpired',
          'RenewedConsentGiven')
# The ledger is evidence: the database itself refuses to rewrite or remove an event.
APPEND_ONLY = ('consent_event',)


def upgrade() -> None:
    op.create_table('consent_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_consent_chain_head_single_row')),
    sa.CheckConstraint('length >= 0', name=op.f('ck_consent_chain_head_length_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_chain_head'))
    )
    op.create_table('consent_event',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('receipt_id', sa.String(length=36), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('notice_version_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum(*STATES, name='consentstate', native_enum=False, length=32, create_constraint=True), nullable=False),
    sa.Column('occurred_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_role', sa.Enum('subject', 'admin', 'dpo', 'system', name='actorrole', native_enum=False, length=16, create_constraint=True), nullable=False),
    sa.Column('method', sa.Enum('web', 'api', 'import', 'system', name='consentmethod', native_enum=False, length=16, create_constraint=True), nullable=False),
    sa.Column('leaf_hash', sa.String(length=64), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id > 0', name=op.f('ck_consent_event_position_positive')),
    sa.CheckConstraint("actor_role = 'system' OR actor_id IS NOT NULL", name=op.f('ck_consent_event_actor_named')),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], name=op.f('fk_consent_event_actor_id_person')),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_consent_event_category_key_category')),
    sa.ForeignKeyConstraint(['notice_version_id'], ['notice_version.id'], name=op.f('fk_consent_event_notice_version_id_notice_version')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_consent_event_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_event')),
    sa.UniqueConstraint('chain_hash', name=op.f('uq_consent_event_chain_hash')),
    sa.UniqueConstraint('receipt_id', name=op.f('uq_consent_event_receipt_id'))
    )
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.create_index('ix_consent_event_category_key', ['category_key'], unique=False)
        batch_op.create_index('ix_consent_event_person_id_id', ['person_id', 'id'], unique=False)

    op.create_table('consent_status',
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('state', sa.Enum(*STATES, name='consentstate', native_enum=False, length=32, create_constraint=True), nullable=False),
    sa.Column('notice_version_id', sa.Integer(), nullable=False),
    sa.Column('since', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_consent_status_category_key_category')),
    sa.ForeignKeyConstraint(['event_id'], ['consent_event.id'], name=op.f('fk_consent_status_event_id_consent_event')),
    sa.ForeignKeyConstraint(['notice_version_id'], ['notice_version.id'], name=op.f('fk_consent_status_notice_version_id_notice_version')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_consent_status_person_id_person')),
    sa.PrimaryKeyConstraint('person_id', 'category_key', name=op.f('pk_consent_status')),
    sa.UniqueConstraint('event_id', name=op.f('uq_consent_status_event_id'))
    )
    op.create_table('collector',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('webhook_url', sa.String(length=2048), nullable=False),
    sa.Column('webhook_secret_sealed', sa.String(length=512), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collector')),
    sa.UniqueConstraint('name', name=op.f('uq_collector_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_collector_token_hash'))
    )
    op.create_table('webhook_delivery',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('collector_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('body', sa.String(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'delivered', 'failed', name='deliverystate', native_enum=False, length=16, create_constraint=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_attempt_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=False),
    sa.Column('delivered_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_webhook_delivery_attempts_not_negative')),
    sa.ForeignKeyConstraint(['collector_id'], ['collector.id'], name=op.f('fk_webhook_delivery_collector_id_collector')),
    sa.ForeignKeyConstraint(['event_id'], ['consent_event.id'], name=op.f('fk_webhook_delivery_event_id_consent_event')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery'))
    )
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_collector_id', ['collector_id'], unique=False)
        batch_op.create_index('ix_webhook_delivery_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)

    # The chain starts empty: no events, and the genesis hash of 32 zero bytes.
    op.execute(sa.text("INSERT INTO consent_chain_head (id, length, chain_hash, updated_at) "
                       "VALUES (1, 0, :genesis, CURRENT_TIMESTAMP)")
               .bindparams(genesis='0' * 64))
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in append_only_ddl(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in drop_append_only_ddl(dialect, table):
            op.execute(statement)
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_state_next_attempt_at')
        batch_op.drop_index('ix_webhook_delivery_collector_id')
    op.drop_table('webhook_delivery')
    op.drop_table('collector')
    op.drop_table('consent_status')
    with op.batch_alter_table('consent_event', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_event_person_id_id')
        batch_op.drop_index('ix_consent_event_category_key')
    op.drop_table('consent_event')
    op.drop_table('consent_chain_head')
