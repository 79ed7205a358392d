"""The OpenID Connect relying party: Authlib's Flask client with the issuer pinned.

Authlib trusts whatever issuer the discovery document names and checks ``aud`` only when
told to; both are fixed here, and the accepted signature algorithms come from our settings,
never from the provider (so a provider advertising ``none`` cannot make us accept it).
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_client import FlaskOAuth2App, OAuth
from flask import Flask, current_app
from typing_extensions import override

EXTENSION = "portal.oidc"


class ProviderMisconfigured(Exception):
    """The provider's discovery document contradicts our configuration."""


class PinnedOIDCApp(FlaskOAuth2App):
    """An OIDC client that refuses a provider whose discovery names another issuer."""

    expected_issuer: str = ""
    allowed_algorithms: tuple[str, ...] = ()

    @override
    def load_server_metadata(self) -> dict[str, Any]:
        fresh = "_loaded_at" not in self.server_metadata
        metadata: dict[str, Any] = super().load_server_metadata()
        if fresh:
            if metadata.get("issuer") != self.expected_issuer:
                # Forget the document, so that a corrected provider is read again next time.
                self.server_metadata.clear()
                raise ProviderMisconfigured(
                    f"the provider's discovery document names issuer {metadata.get('issuer')!r}"
                    f", not the configured {self.expected_issuer!r}")
            offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
            # Authlib decodes with the algorithms listed here: keep only the ones we allow.
            metadata["id_token_signing_alg_values_supported"] = [
                alg for alg in offered if alg in self.allowed_algorithms]
            if not metadata["id_token_signing_alg_values_supported"]:
                self.server_metadata.clear()
                raise ProviderMisconfigured(
                    f"the provider signs ID tokens with {offered}, none of which is allowed "
                    f"by PORTAL_OIDC_ALGORITHMS {list(self.allowed_algorithms)}")
        return metadata


class PortalOAuth(OAuth):
    """Authlib's registry, building pinned clients."""

    oauth2_client_cls = PinnedOIDCApp


def init_app(app: Flask, *, issuer: str, client_id: str, client_secret: str) -> None:
    """Register the company's (or the demo's) provider as the ``idp`` client of ``app``."""
    oauth = PortalOAuth(app)
    client = oauth.register(
        "idp",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": app.config["OIDC_SCOPES"],
            "code_challenge_method": "S256",
            "timeout": 10,
        },
    )
    client.expected_issuer = issuer
    client.allowed_algorithms = tuple(app.config["OIDC_ALGORITHMS"])
    app.extensions[EXTENSION] = client


def client() -> PinnedOIDCApp:
    """Return the OIDC client of the current app."""
    oidc_client: PinnedOIDCApp = current_app.extensions[EXTENSION]
    return oidc_client


def claims_options() -> dict[str, Any]:
    """Return the ID token checks Authlib does not do by default: issuer and audience."""
    oidc_client = client()
    return {
        "iss": {"essential": True, "value": oidc_client.expected_issuer},
        "aud": {"essential": True, "value": oidc_client.client_id},
        "sub": {"essential": True},
    }
