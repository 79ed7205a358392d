"""Authlib's OpenID Connect provider, wired to the demo's people, client, key and tables.

The authorization code flow only, with PKCE (S256) and a nonce required, RS256 ID tokens,
a userinfo endpoint behind bearer tokens, and RP-initiated logout.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidRequestError,
    OAuth2Request,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode, UserInfo, UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint, EndSessionRequest
from flask import Flask, current_app
from joserfc.jwk import KeySet, RSAKey
from typing_extensions import override

from portal.auth.demo import service
from portal.auth.demo.models import DemoAccessToken, DemoAuthorizationCode
from portal.auth.demo.service import DemoPerson
from portal.db import utcnow

EXTENSION = "portal.demo_idp"
CLIENT_ID = "portal-demo"
SCOPES = ("openid", "profile", "email")
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
# Paths under the issuer; the blueprint's routes and the discovery document both use these.
PATHS = {
    "discovery": "/.well-known/openid-configuration",
    "jwks": "/jwks",
    "authorize": "/authorize",
    "token": "/token",
    "userinfo": "/userinfo",
    "end_session": "/end-session",
}


def issuer(app: Flask) -> str:
    """Return the demo provider's issuer identifier: the portal's base URL plus /demo-idp."""
    return f"{app.config['BASE_URL']}/demo-idp"


def is_portal_url(url: str, base_url: str) -> bool:
    """Say whether ``url`` is a page of the portal itself (same origin, under its base path)."""
    if any(ord(char) < 32 for char in url) or "\\" in url:
        return False
    target, base = urlsplit(url), urlsplit(base_url)
    if (target.scheme, target.netloc.lower()) != (base.scheme, base.netloc.lower()):
        return False
    if target.fragment or target.username or target.password:
        return False
    return target.path.startswith(base.path.rstrip("/") + "/")


class PortalURLs:
    """Every URL of the portal: what the demo client registers as post-logout redirects.

    Authlib asks ``uri in client_metadata["post_logout_redirect_uris"]``; answering for the
    whole portal lets the portal choose its page after sign-out without an exact list here.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and is_portal_url(url, self.base_url)


@dataclass(frozen=True)
class DemoClient(ClientMixin):
    """The portal itself, the only client of the demo provider."""

    client_id: str
    client_secret: str
    redirect_uri: str
    portal_url: str

    @property
    def client_metadata(self) -> dict[str, Any]:
        """Return the registered metadata that Authlib's OIDC endpoints read."""
        return {"post_logout_redirect_uris": PortalURLs(self.portal_url)}

    @override
    def get_client_id(self) -> str:
        return self.client_id

    @override
    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    @override
    def get_allowed_scope(self, scope: str | None) -> str:
        requested = (scope or "").split()
        return " ".join(part for part in requested if part in SCOPES)

    @override
    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact match, as OAuth 2.0 Security BCP asks of every provider.
        return redirect_uri == self.redirect_uri

    @override
    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    @override
    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # A confidential client: "none" (no secret) is never enough.
        return method in CLIENT_AUTH_METHODS

    @override
    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    @override
    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class DemoIdentityProvider:
    """Everything the demo provider needs at request time, kept on the app."""

    people: dict[str, DemoPerson]
    signing_key: RSAKey
    server: AuthorizationServer


def provider() -> DemoIdentityProvider:
    """Return the demo provider of the current app."""
    demo: DemoIdentityProvider = current_app.extensions[EXTENSION]
    return demo


def portal_client() -> DemoClient:
    """Return the portal as the demo provider's client, from the current settings."""
    base_url = current_app.config["BASE_URL"]
    return DemoClient(client_id=CLIENT_ID,
                      client_secret=service.derive_client_secret(current_app.config["SECRET_KEY"]),
                      redirect_uri=f"{base_url}/auth/callback", portal_url=base_url)


def find_client(client_id: str) -> DemoClient | None:
    """Return the client with ``client_id``: the portal, or nobody."""
    return portal_client() if client_id == CLIENT_ID else None


def save_token(token: dict[str, Any], request: OAuth2Request) -> None:
    """Store the access token of a token response (Authlib's save_token hook)."""
    code = request.authorization_code
    service.store_access_token(
        token["access_token"], client_id=request.client.get_client_id(),
        subject=request.user.sub, scope=token.get("scope", ""),
        expires_in=int(token["expires_in"]),
        code=code if isinstance(code, DemoAuthorizationCode) else None)


class DemoAuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """The authorization code grant, with codes kept in the database."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(CLIENT_AUTH_METHODS)

    @override
    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        service.issue_authorization_code(
            code, client_id=request.client.get_client_id(), person=request.user,
            redirect_uri=request.payload.redirect_uri or request.client.redirect_uri,
            scope=request.scope, nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"])

    @override
    def query_authorization_code(self, code: str,
                                 client: DemoClient) -> DemoAuthorizationCode | None:
        # Redeemed here, not in delete_authorization_code: claiming the code first is what
        # makes it usable once even when two token requests race.
        return service.redeem_authorization_code(code, client.get_client_id())

    @override
    def delete_authorization_code(self, authorization_code: DemoAuthorizationCode) -> None:
        # Already marked redeemed; the row stays until it expires so a replay is recognised.
        return None

    @override
    def authenticate_user(self, authorization_code: DemoAuthorizationCode) -> DemoPerson | None:
        return provider().people.get(authorization_code.subject)


class RequiredS256CodeChallenge(CodeChallenge):
    """PKCE for every authorization request, with S256 only (RFC 9700 2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    @override
    def validate_code_challenge(self, grant: grants.AuthorizationCodeGrant,
                                redirect_uri: str) -> None:
        data = grant.request.payload.data
        # Authlib's CodeChallenge(required=True) insists on PKCE for public clients only.
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge': this provider requires PKCE.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class DemoOpenIDCode(OpenIDCode):
    """ID tokens for the code grant, signed with the demo provider's RSA key."""

    @override
    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return service.nonce_was_used(request.payload.client_id, nonce)

    @override
    def resolve_client_private_key(self, client: DemoClient) -> RSAKey:
        return provider().signing_key

    @override
    def get_client_algorithm(self, client: DemoClient) -> str:
        return service.SIGNING_ALGORITHM

    @override
    def get_encode_header(self, client: DemoClient) -> dict[str, str]:
        return {"alg": service.SIGNING_ALGORITHM, "kid": str(provider().signing_key.kid),
                "typ": "JWT"}

    @override
    def get_client_claims(self, client: DemoClient) -> dict[str, Any]:
        now = utcnow()
        return {"iss": issuer(current_app), "aud": client.get_client_id(),
                "iat": int(now.timestamp()),
                "exp": int((now + service.ID_TOKEN_LIFETIME).timestamp())}

    @override
    def generate_user_info(self, user: DemoPerson, scope: str) -> UserInfo:
        return UserInfo(service.describe_person(user, scope))


@dataclass(frozen=True)
class IssuedToken(TokenMixin):
    """A stored access token, as Authlib's bearer token validator expects one."""

    row: DemoAccessToken

    @property
    def scope(self) -> str:
        """Return the granted scope (Authlib's userinfo endpoint reads the attribute)."""
        return self.row.scope

    @override
    def check_client(self, client: DemoClient) -> bool:
        return self.row.client_id == client.get_client_id()

    @override
    def get_scope(self) -> str:
        return self.row.scope

    @override
    def get_expires_in(self) -> int:
        return int((self.row.expires_at - self.row.issued_at).total_seconds())

    @override
    def is_expired(self) -> bool:
        return self.row.expires_at <= utcnow()

    @override
    def is_revoked(self) -> bool:
        return self.row.revoked_at is not None

    @override
    def get_user(self) -> DemoPerson | None:
        return provider().people.get(self.row.subject)

    @override
    def get_client(self) -> DemoClient | None:
        return find_client(self.row.client_id)


class DemoBearerTokenValidator(BearerTokenValidator):
    """Accept the demo provider's own access tokens, looked up by digest."""

    @override
    def authenticate_token(self, token_string: str) -> IssuedToken | None:
        row = service.find_access_token(token_string)
        return IssuedToken(row) if row is not None else None


class DemoUserInfoEndpoint(UserInfoEndpoint):
    """The userinfo endpoint: the same claims as the ID token, for a valid access token."""

    @override
    def get_issuer(self) -> str:
        return issuer(current_app)

    @override
    def generate_user_info(self, user: DemoPerson, scope: str) -> UserInfo:
        return UserInfo(service.describe_person(user, scope))

    @override
    def resolve_private_key(self) -> RSAKey:
        return provider().signing_key


class DemoEndSessionEndpoint(EndSessionEndpoint):
    """RP-initiated logout: revoke the person's tokens and send the browser back."""

    @override
    def get_server_jwks(self) -> KeySet:
        return KeySet([provider().signing_key])

    @override
    def get_algorithms(self) -> list[str]:
        return [service.SIGNING_ALGORITHM]

    @override
    def end_session(self, end_session_request: EndSessionRequest) -> None:
        claims = end_session_request.id_token_claims
        client = end_session_request.client
        # The demo keeps no sign-in session of its own (it asks every time); what is left
        # to end are the tokens it handed out.
        if claims and isinstance(claims.get("sub"), str) and client is not None:
            service.revoke_tokens_of_person(claims["sub"], client.get_client_id())


def _random_token(**_context: Any) -> str:
    return secrets.token_urlsafe(32)


def create_server(app: Flask) -> AuthorizationServer:
    """Build the authorization server with its grant, extensions and endpoints."""
    server = AuthorizationServer()
    server.init_app(app, query_client=find_client, save_token=save_token)
    server.scopes_supported = list(SCOPES)
    lifetime = int(service.ACCESS_TOKEN_LIFETIME / dt.timedelta(seconds=1))
    server.register_token_generator(
        "default", BearerTokenGenerator(_random_token, expires_generator=lifetime))
    server.register_grant(DemoAuthorizationCodeGrant, [
        RequiredS256CodeChallenge(required=True),
        # The portal always sends a nonce; requiring it catches a client that stopped.
        DemoOpenIDCode(require_nonce=True),
    ])
    protector = ResourceProtector()
    protector.register_token_validator(DemoBearerTokenValidator())
    server.register_endpoint(DemoUserInfoEndpoint(resource_protector=protector))
    server.register_endpoint(DemoEndSessionEndpoint())
    return server


def describe_provider(issuer_url: str) -> dict[str, Any]:
    """Return the OpenID Provider Metadata (the discovery document)."""
    return {
        "issuer": issuer_url,
        "authorization_endpoint": issuer_url + PATHS["authorize"],
        "token_endpoint": issuer_url + PATHS["token"],
        "userinfo_endpoint": issuer_url + PATHS["userinfo"],
        "jwks_uri": issuer_url + PATHS["jwks"],
        "end_session_endpoint": issuer_url + PATHS["end_session"],
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [service.SIGNING_ALGORITHM],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce",
                             "at_hash", "name", "email", "email_verified", "zoneinfo",
                             "locale", "groups", "department", "location"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }
