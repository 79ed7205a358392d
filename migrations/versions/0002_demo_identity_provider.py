"""demo identity provider: authorization codes and access tokens (used in demo mode only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 07:36:39.587905
"""

from alembic import op
import sqlalchemy as sa
import portal.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('demo_idp_authorization_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.String(length=255), nullable=False),
    sa.Column('nonce', sa.String(length=255), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('code_challenge_method', sa.String(length=8), nullable=False),
    sa.Column('auth_time', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('issued_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('redeemed_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("code_challenge_method = 'S256'", name=op.f('ck_demo_idp_authorization_code_pkce_s256')),
    sa.CheckConstraint('expires_at > issued_at', name=op.f('ck_demo_idp_authorization_code_expires_after_issue')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_demo_idp_authorization_code')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_demo_idp_authorization_code_code_hash'))
    )
    with op.batch_alter_table('demo_idp_authorization_code', schema=None) as batch_op:
        batch_op.create_index('ix_demo_idp_authorization_code_client_nonce', ['client_id', 'nonce'], unique=False)

    op.create_table('demo_idp_access_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.String(length=255), nullable=False),
    sa.Column('issued_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', portal.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', portal.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('authorization_code_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('expires_at > issued_at', name=op.f('ck_demo_idp_access_token_expires_after_issue')),
    sa.ForeignKeyConstraint(['authorization_code_id'], ['demo_idp_authorization_code.id'], name='fk_demo_idp_access_token_code', ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_demo_idp_access_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_demo_idp_access_token_token_hash'))
    )
    with op.batch_alter_table('demo_idp_access_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_demo_idp_access_token_authorization_code_id'), ['authorization_code_id'], unique=False)
        batch_op.create_index('ix_demo_idp_access_token_subject', ['subject'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('demo_idp_access_token', schema=None) as batch_op:
        batch_op.drop_index('ix_demo_idp_access_token_subject')
        batch_op.drop_index(batch_op.f('ix_demo_idp_access_token_authorization_code_id'))

    op.drop_table('demo_idp_access_token')
    with op.batch_alter_table('demo_idp_authorization_code', schema=None) as batch_op:
        batch_op.drop_index('ix_demo_idp_authorization_code_client_nonce')

    op.drop_table('demo_idp_authorization_code')
