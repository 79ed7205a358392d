"""training datasets: clients, snapshots and their parts and holdings, trained models; and the
workplace pseudonym by which collectors name a person inside other people's records

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 20:18:46.964318
"""

from alembic import op
import secrets

import sqlalchemy as sa

import portal.db


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_client',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('purposes', sa.JSON(), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('webhook_url', sa.String(length=2048), nullable=False),
    sa.Column('webhook_secret_sealed', sa.String(length=512), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_client')),
    sa.UniqueConstraint('name', name=op.f('uq_training_client_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_training_client_token_hash'))
    )
    op.create_table('trained_model',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('registered_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['training_client.id'], name=op.f('fk_trained_model_client_id_training_client')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trained_model')),
    sa.UniqueConstraint('name', 'version', name=op.f('uq_trained_model_name')),
    sa.UniqueConstraint('public_id', name=op.f('uq_trained_model_public_id'))
    )
    op.create_table('training_snapshot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('purpose_key', sa.String(length=64), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('collected_from', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('collected_to', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('max_dss_level', sa.SmallInteger(), nullable=False),
    sa.Column('notice_version_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('queued', 'building', 'ready', 'failed', 'retired', name='snapshotstate', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('requested_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ready_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('failed_reason', sa.Text(), nullable=False),
    sa.Column('outdated_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retired_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('retired_by', sa.String(length=255), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False),
    sa.Column('master_key_id', sa.String(length=16), nullable=False),
    sa.Column('totals', sa.JSON(), nullable=False),
    sa.Column('manifest_jws', sa.Text(), nullable=True),
    sa.Column('certificate_jws', sa.Text(), nullable=True),
    sa.CheckConstraint("state != 'retired' OR (retired_at IS NOT NULL AND length(wrapped_key) = 0)", name=op.f('ck_training_snapshot_retired_has_no_key')),
    sa.CheckConstraint('collected_from < collected_to', name=op.f('ck_training_snapshot_period_ordered')),
    sa.CheckConstraint('max_dss_level BETWEEN 1 AND 4', name=op.f('ck_training_snapshot_max_dss_level')),
    sa.ForeignKeyConstraint(['client_id'], ['training_client.id'], name=op.f('fk_training_snapshot_client_id_training_client')),
    sa.ForeignKeyConstraint(['notice_version_id'], ['notice_version.id'], name=op.f('fk_training_snapshot_notice_version_id_notice_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_snapshot')),
    sa.UniqueConstraint('number', name=op.f('uq_training_snapshot_number')),
    sa.UniqueConstraint('public_id', name=op.f('uq_training_snapshot_public_id'))
    )
    with op.batch_alter_table('training_snapshot', schema=None) as batch_op:
        batch_op.create_index('ix_training_snapshot_client_id_requested_at', ['client_id', 'requested_at'], unique=False)
        batch_op.create_index('ix_training_snapshot_state', ['state'], unique=False)

    op.create_table('trained_model_snapshot',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['trained_model.id'], name=op.f('fk_trained_model_snapshot_model_id_trained_model')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['training_snapshot.id'], name=op.f('fk_trained_model_snapshot_snapshot_id_training_snapshot')),
    sa.PrimaryKeyConstraint('model_id', 'snapshot_id', name=op.f('pk_trained_model_snapshot'))
    )
    op.create_table('training_snapshot_holding',
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('included', sa.Integer(), nullable=False),
    sa.Column('excluded', sa.JSON(), nullable=False),
    sa.Column('outdated_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outdated_reason', sa.Enum('withdrawn', 'expired', 'objected', 'erased', name='outdatedreason', native_enum=False, create_constraint=True, length=16), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_training_snapshot_holding_person_id_person')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['training_snapshot.id'], name=op.f('fk_training_snapshot_holding_snapshot_id_training_snapshot')),
    sa.PrimaryKeyConstraint('snapshot_id', 'person_id', 'category_key', name=op.f('pk_training_snapshot_holding'))
    )
    with op.batch_alter_table('training_snapshot_holding', schema=None) as batch_op:
        batch_op.create_index('ix_training_snapshot_holding_person_id', ['person_id'], unique=False)

    op.create_table('training_snapshot_part',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('category_key', sa.String(length=64), nullable=False),
    sa.Column('first_person_id', sa.Integer(), nullable=False),
    sa.Column('last_person_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'leased', 'done', 'failed', name='partstate', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('lease_owner', sa.String(length=128), nullable=False),
    sa.Column('lease_expires_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=255), nullable=False),
    sa.Column('rows', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('size', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('finished_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=False),
    sa.CheckConstraint('first_person_id <= last_person_id', name=op.f('ck_training_snapshot_part_people_ordered')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['training_snapshot.id'], name=op.f('fk_training_snapshot_part_snapshot_id_training_snapshot')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_snapshot_part')),
    sa.UniqueConstraint('snapshot_id', 'number', name=op.f('uq_training_snapshot_part_snapshot_id'))
    )
    with op.batch_alter_table('training_snapshot_part', schema=None) as batch_op:
        batch_op.create_index('ix_training_snapshot_part_state_lease_expires_at', ['state', 'lease_expires_at'], unique=False)

    op.create_table('training_snapshot_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('outdated', 'retired', name='snapshoteventkind', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('occurred_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['snapshot_id'], ['training_snapshot.id'], name=op.f('fk_training_snapshot_event_snapshot_id_training_snapshot')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_training_snapshot_event'))
    )
    with op.batch_alter_table('training_snapshot_event', schema=None) as batch_op:
        batch_op.create_index('ix_training_snapshot_event_snapshot_id', ['snapshot_id'], unique=False)

    # Webhook notices go to training clients too (training.snapshot.outdated): one outbox.
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('training_client_id', sa.Integer(), nullable=True))
        batch_op.alter_column('collector_id', existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_webhook_delivery_training_client_id_training_client'), 'training_client', ['training_client_id'], ['id'])
        batch_op.create_index('ix_webhook_delivery_training_client_id', ['training_client_id'], unique=False)
        batch_op.create_check_constraint('one_recipient', "(collector_id IS NULL AND training_client_id IS NOT NULL) OR (collector_id IS NOT NULL AND training_client_id IS NULL)")

    # Everyone already signed in gets a random pseudonym before the column becomes required.
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.add_column(sa.Column('workplace_pseudonym', sa.String(length=14), nullable=True))
    person = sa.table('person', sa.column('id', sa.Integer),
                      sa.column('workplace_pseudonym', sa.String))
    connection = op.get_bind()
    for (person_id,) in connection.execute(sa.select(person.c.id)).all():
        connection.execute(sa.update(person).where(person.c.id == person_id)
                           .values(workplace_pseudonym="p-" + secrets.token_hex(6)))
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.alter_column('workplace_pseudonym', existing_type=sa.String(length=14),
                              nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_person_workplace_pseudonym'), ['workplace_pseudonym'])



def downgrade() -> None:
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_person_workplace_pseudonym'), type_='unique')
        batch_op.drop_column('workplace_pseudonym')

    op.execute("DELETE FROM webhook_delivery WHERE collector_id IS NULL")
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_webhook_delivery_one_recipient'), type_='check')
        batch_op.drop_index('ix_webhook_delivery_training_client_id')
        batch_op.drop_constraint(batch_op.f('fk_webhook_delivery_training_client_id_training_client'), type_='foreignkey')
        batch_op.drop_column('training_client_id')
        batch_op.alter_column('collector_id', existing_type=sa.INTEGER(), nullable=False)

    with op.batch_alter_table('training_snapshot_event', schema=None) as batch_op:
        batch_op.drop_index('ix_training_snapshot_event_snapshot_id')

    op.drop_table('training_snapshot_event')
    with op.batch_alter_table('training_snapshot_part', schema=None) as batch_op:
        batch_op.drop_index('ix_training_snapshot_part_state_lease_expires_at')

    op.drop_table('training_snapshot_part')
    with op.batch_alter_table('training_snapshot_holding', schema=None) as batch_op:
        batch_op.drop_index('ix_training_snapshot_holding_person_id')

    op.drop_table('training_snapshot_holding')
    op.drop_table('trained_model_snapshot')
    with op.batch_alter_table('training_snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_training_snapshot_state')
        batch_op.drop_index('ix_training_snapshot_client_id_requested_at')

    op.drop_table('training_snapshot')
    op.drop_table('trained_model')
    op.drop_table('training_client')
