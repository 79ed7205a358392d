"""audit log: hash-chained entries and the people they concern

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:13:04
"""

from alembic import op
import sqlalchemy as sa
import portal.db
from portal.db import append_only_ddl, drop_append_only_ddl


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# The audit log is evidence: the database itself refuses to rewrite or remove an entry.
APPEND_ONLY = ('audit_entry', 'audit_subject')


def upgrade() -> None:
    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('length', sa.Integer(), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.Column('updated_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_chain_head_single_row')),
    sa.CheckConstraint('length >= 0', name=op.f('ck_audit_chain_head_length_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_chain_head'))
    )
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('reference', sa.String(length=36), nullable=False),
    sa.Column('occurred_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_name', sa.String(length=255), nullable=False),
    sa.Column('actor_role', sa.Enum('subject', 'hr', 'dpo', 'admin', 'operator', 'system', name='auditrole', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('action', sa.Enum('read', 'download', 'export', 'change', 'delete', name='auditaction', native_enum=False, create_constraint=True, length=16), nullable=False),
    sa.Column('what', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=1000), nullable=False),
    sa.Column('detail', sa.String(length=4000), nullable=False),
    sa.Column('subject_count', sa.Integer(), nullable=False),
    sa.Column('subjects_digest', sa.String(length=64), nullable=False),
    sa.Column('leaf_hash', sa.String(length=64), nullable=False),
    sa.Column('chain_hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint("actor_role IN ('system', 'operator') OR actor_id IS NOT NULL", name=op.f('ck_audit_entry_actor_named')),
    sa.CheckConstraint('id > 0', name=op.f('ck_audit_entry_position_positive')),
    sa.CheckConstraint('subject_count >= 0', name=op.f('ck_audit_entry_subject_count_not_negative')),
    sa.ForeignKeyConstraint(['actor_id'], ['person.id'], name=op.f('fk_audit_entry_actor_id_person')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry')),
    sa.UniqueConstraint('chain_hash', name=op.f('uq_audit_entry_chain_hash')),
    sa.UniqueConstraint('reference', name=op.f('uq_audit_entry_reference'))
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index('ix_audit_entry_actor_id', ['actor_id'], unique=False)

    op.create_table('audit_subject',
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['audit_entry.id'], name=op.f('fk_audit_subject_entry_id_audit_entry')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_audit_subject_person_id_person')),
    sa.PrimaryKeyConstraint('entry_id', 'person_id', name=op.f('pk_audit_subject'))
    )
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.create_index('ix_audit_subject_person_id_entry_id', ['person_id', 'entry_id'], unique=False)
    # The chain starts empty: no entries, and the genesis hash of 32 zero bytes.
    op.execute(sa.text("INSERT INTO audit_chain_head (id, length, chain_hash, updated_at) "
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
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_subject_person_id_entry_id')

    op.drop_table('audit_subject')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_entry_actor_id')

    op.drop_table('audit_entry')
    op.drop_table('audit_chain_head')
