"""What the demo identity provider must remember between requests: codes and access tokens.

They live in the database, not in process memory, because the authorize request, the token
request and the userinfo request may each reach a different process. Only SHA-256 digests of
codes and tokens are stored, so a copy of these tables lets nobody redeem or use them.
"""

from __future__ import annotations

import datetime as dt

from authlib.oidc.core import AuthorizationCodeMixin
from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from typing_extensions import override

from portal.db import Base, UTCDateTime, utcnow


class DemoAuthorizationCode(Base, AuthorizationCodeMixin):
    """An authorization code issued after a demo sign-in, redeemable once."""

    __tablename__ = "demo_idp_authorization_code"
    __table_args__ = (
        CheckConstraint("expires_at > issued_at", name="expires_after_issue"),
        CheckConstraint("code_challenge_method = 'S256'", name="pkce_s256"),
        Index("ix_demo_idp_authorization_code_client_nonce", "client_id", "nonce"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(String(255))
    nonce: Mapped[str | None] = mapped_column(String(255))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8))
    # When the person chose whom to sign in as (OIDC auth_time).
    auth_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Kept after redemption until expiry, so that a replayed code is recognised as one.
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    # Authlib's AuthorizationCodeMixin (RFC 6749 and OIDC), read by its grant and extensions.
    @override
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    @override
    def get_scope(self) -> str:
        return self.scope

    @override
    def get_nonce(self) -> str | None:
        return self.nonce

    @override
    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())

    @override
    def get_acr(self) -> str | None:
        return None

    @override
    def get_amr(self) -> list[str] | None:
        return None


class DemoAccessToken(Base):
    """A bearer token for the demo provider's userinfo endpoint."""

    __tablename__ = "demo_idp_access_token"
    __table_args__ = (
        CheckConstraint("expires_at > issued_at", name="expires_after_issue"),
        Index("ix_demo_idp_access_token_subject", "subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The code it was issued for: a replay of that code revokes this token (RFC 6749 4.1.2).
    authorization_code_id: Mapped[int | None] = mapped_column(
        # Named here: the naming convention's name would pass PostgreSQL's 63 characters.
        ForeignKey("demo_idp_authorization_code.id", ondelete="SET NULL",
                   name="fk_demo_idp_access_token_code"), index=True)
