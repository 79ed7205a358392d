"""deletion requests, their timeline, mail outbox, objection decisions

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 10:22:24.526836
"""

from alembic import op
import sqlalchemy as sa
import portal.db
from portal.db import append_only_ddl, drop_append_only_ddl


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# A request's timeline is what the employee was told: the database refuses to rewrite it.
APPEND_ONLY = ('request_event',)
OBJECTION_STATES_BEFORE = "state IN ('received')"
OBJECTION_STATES = "state IN ('received', 'extended', 'upheld', 'dismissed')"


def upgrade() -> None:
    op.create_table('mail_message',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('locale', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'sent', 'failed', name='mailstate', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=False),
    sa.Column('sent_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_mail_message_attempts_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_message'))
    )
    with op.batch_alter_table('mail_message', schema=None) as batch_op:
        batch_op.create_index('ix_mail_message_state_next_attempt_at', ['state', 'next_attempt_at'], unique=False)

    op.create_table('deletion_request',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=36), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.Enum('all', 'categories', 'range', name='deletionscope', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('since', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('until', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('withdraw_consent', sa.Boolean(), nullable=False),
    sa.Column('state', sa.Enum('received', 'extended', 'approved', 'approved_in_part', 'refused', 'confirmed', 'executing', 'executed', 'cancelled', name='requeststate', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('received_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('extension_months', sa.Integer(), nullable=True),
    sa.Column('extension_reason', sa.Text(), nullable=True),
    sa.Column('decided_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=False),
    sa.Column('confirmed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_by_id', sa.Integer(), nullable=True),
    sa.Column('execution_started_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('executed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('executed_by_id', sa.Integer(), nullable=True),
    sa.Column('verified_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('certificate_id', sa.String(length=36), nullable=True),
    sa.Column('certificate_jws', sa.Text(), nullable=True),
    sa.CheckConstraint("scope != 'range' OR (since IS NOT NULL AND until IS NOT NULL AND since <= until)", name=op.f('ck_deletion_request_range_complete')),
    sa.CheckConstraint("state != 'confirmed' OR confirmed_by_id IS NOT NULL", name=op.f('ck_deletion_request_confirmation_recorded')),
    sa.CheckConstraint("state != 'executed' OR executed_at IS NOT NULL", name=op.f('ck_deletion_request_execution_recorded')),
    sa.CheckConstraint("state != 'refused' OR decision_reason != ''", name=op.f('ck_deletion_request_refusal_has_reason')),
    sa.CheckConstraint("state IN ('received', 'extended', 'cancelled') OR (decided_at IS NOT NULL AND decided_by_id IS NOT NULL)", name=op.f('ck_deletion_request_decision_recorded')),
    sa.CheckConstraint('(extension_months IS NULL) = (extension_reason IS NULL)', name=op.f('ck_deletion_request_extension_has_reason')),
    sa.CheckConstraint('confirmed_by_id IS NULL OR confirmed_by_id != decided_by_id', name=op.f('ck_deletion_request_confirmed_by_another')),
    sa.CheckConstraint('due_at > received_at', name=op.f('ck_deletion_request_due_after_receipt')),
    sa.CheckConstraint('extension_months IS NULL OR extension_months BETWEEN 1 AND 2', name=op.f('ck_deletion_request_extension_at_most_two_months')),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['person.id'], name=op.f('fk_deletion_request_confirmed_by_id_person')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['person.id'], name=op.f('fk_deletion_request_decided_by_id_person')),
    sa.ForeignKeyConstraint(['executed_by_id'], ['person.id'], name=op.f('fk_deletion_request_executed_by_id_person')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_deletion_request_person_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deletion_request')),
    sa.UniqueConstraint('certificate_id', name=op.f('uq_deletion_request_certificate_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_deletion_request_reference'))
    )
    with op.batch_alter_table('deletion_request', schema=None) as batch_op:
        batch_op.create_index('ix_deletion_request_person_id', ['person_id'], unique=False)
        batch_op.create_index('ix_deletion_request_state_due_at', ['state', 'due_at'], unique=False)

    op.create_table('deletion_step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('whole_category', sa.Boolean(), nullable=False),
    sa.Column('batches_deleted', sa.Integer(), nullable=False),
    sa.Column('events_deleted', sa.Integer(), nullable=False),
    sa.Column('first_collected', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_collected', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('destroyed_key_ids', sa.JSON(), nullable=False),
    sa.Column('consent_withdrawn', sa.Boolean(), nullable=False),
    sa.Column('collectors_notified', sa.Integer(), nullable=False),
    sa.Column('done_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('batches_deleted >= 0 AND events_deleted >= 0', name=op.f('ck_deletion_step_counts_not_negative')),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_deletion_step_category_key_category')),
    sa.ForeignKeyConstraint(['request_id'], ['deletion_request.id'], name=op.f('fk_deletion_step_request_id_deletion_request')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deletion_step')),
    sa.UniqueConstraint('request_id', 'category_key', name=op.f('uq_deletion_step_request_id'))
    )
    op.create_table('kept_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.CheckConstraint("reason != ''", name=op.f('ck_kept_item_has_reason')),
    sa.ForeignKeyConstraint(['category_key'], ['category.key'], name=op.f('fk_kept_item_category_key_category')),
    sa.ForeignKeyConstraint(['request_id'], ['deletion_request.id'], name=op.f('fk_kept_item_request_id_deletion_request')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_kept_item')),
    sa.UniqueConstraint('request_id', 'category_key', name=op.f('uq_kept_item_request_id'))
    )
    op.create_table('request_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('objection_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.Enum('submitted', 'consent_withdrawn', 'extended', 'approved', 'approved_in_part', 'refused', 'confirmed', 'execution_started', 'category_deleted', 'executed', 'verified', 'cancelled', 'objection_upheld', 'objection_dismissed', name='eventkind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('occurred_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=255), nullable=False),
    sa.Column('actor_capacity', sa.Enum('employee', 'dpo', 'operator', 'system', name='actorcapacity', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.CheckConstraint('(request_id IS NULL) != (objection_id IS NULL)', name=op.f('ck_request_event_of_one_request')),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], name=op.f('fk_request_event_actor_id_person')),
    sa.ForeignKeyConstraint(['objection_id'], ['objection.id'], name=op.f('fk_request_event_objection_id_objection')),
    sa.ForeignKeyConstraint(['request_id'], ['deletion_request.id'], name=op.f('fk_request_event_request_id_deletion_request')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_request_event'))
    )
    with op.batch_alter_table('request_event', schema=None) as batch_op:
        batch_op.create_index('ix_request_event_objection_id', ['objection_id'], unique=False)
        batch_op.create_index('ix_request_event_request_id', ['request_id'], unique=False)

    # A deletion notice to a collector announces no consent event.
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('event_id',
               existing_type=sa.INTEGER(),
               nullable=True)

    # The DPO now decides on objections.
    with op.batch_alter_table('objection', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_objection_state_known'), type_='check')
        batch_op.create_check_constraint('state_known', OBJECTION_STATES)

    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in append_only_ddl(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for statement in drop_append_only_ddl(dialect, table):
            op.execute(statement)

    op.execute("UPDATE objection SET state = 'received' WHERE state != 'received'")
    with op.batch_alter_table('objection', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_objection_state_known'), type_='check')
        batch_op.create_check_constraint('state_known', OBJECTION_STATES_BEFORE)

    op.execute("DELETE FROM webhook_delivery WHERE event_id IS NULL")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.alter_column('event_id',
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table('request_event', schema=None) as batch_op:
        batch_op.drop_index('ix_request_event_request_id')
        batch_op.drop_index('ix_request_event_objection_id')

    op.drop_table('request_event')
    op.drop_table('kept_item')
    op.drop_table('deletion_step')
    with op.batch_alter_table('deletion_request', schema=None) as batch_op:
        batch_op.drop_index('ix_deletion_request_state_due_at')
        batch_op.drop_index('ix_deletion_request_person_id')

    op.drop_table('deletion_request')
    with op.batch_alter_table('mail_message', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_message_state_next_attempt_at')

    op.drop_table('mail_message')
