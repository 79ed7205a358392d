"""Who is calling the collector API: bearer tokens, their scopes, and the API's refusals.

Only the ``Authorization: Bearer <token>`` header authenticates; a browser's session cookie
is never looked at, so a signed-in page cannot be turned into an API call (no CSRF route in).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request
from flask_limiter.util import get_remote_address

from portal.api.service import CollectorIdentity, hash_token, identify_collector

#: What the portal advertises to clients that did not authenticate (RFC 6750, section 3).
REALM = 'Bearer realm="collector-api"'
DEFAULT_RATE_LIMIT = "600 per minute"


class ApiError(Exception):
    """A refusal of the API: its HTTP status, a stable machine code and a sentence for people.

    ``fields`` (for ``invalid_request``) lists each field at fault with what is wrong with it;
    ``headers`` are added to the answer (``WWW-Authenticate``, ``Retry-After``).
    """

    def __init__(self, status: int, code: str, message: str, *,
                 fields: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the answer."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.fields is not None:
            body["fields"] = self.fields
        return body


def _presented_token() -> str | None:
    """Return the bearer token of the request, ``""`` if the header is malformed, else ``None``."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def authenticated_collector() -> CollectorIdentity | None:
    """Return the active collector whose token the request carries, looked up once per request."""
    if "api_collector" not in g:
        token = _presented_token()
        collector = identify_collector(token) if token else None
        g.api_collector = collector if collector is not None and not collector.revoked else None
        g.api_token_revoked = collector is not None and collector.revoked
    found: CollectorIdentity | None = g.api_collector
    return found


def require_collector() -> CollectorIdentity:
    """Return the calling collector, or refuse with 401 (missing, unknown or revoked token)."""
    collector = authenticated_collector()
    if collector is not None:
        return collector
    token = _presented_token()
    if token is None:
        raise ApiError(401, "unauthorized", "Send the collector's token in the header "
                       "'Authorization: Bearer <token>'.", headers={"WWW-Authenticate": REALM})
    if g.api_token_revoked:
        message = "This token was revoked. Ask the privacy admin for a new collector token."
    else:
        message = "The token is not valid. Check that the whole token is sent, as issued."
    raise ApiError(401, "unauthorized", message,
                   headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})


def require_scope(collector: CollectorIdentity, category_key: str) -> None:
    """Refuse with 403 unless ``collector`` is registered for ``category_key``."""
    if not collector.records(category_key):
        raise ApiError(403, "category_not_allowed",
                       f"This token is not registered for category {category_key!r}; it may "
                       "use: " + ", ".join(collector.categories or []) + ".")


def rate_limit_key() -> str:
    """Count requests per token, by its hash; requests without one per client address.

    Counted before the token is checked, so the limiter costs no database query; an invented
    token gets its own count, and a 401 for its next guess.
    """
    token = _presented_token()
    if token:
        return "token:" + hash_token(token[:1024])
    return "address:" + (get_remote_address() or "unknown")


def rate_limit() -> str:
    """Return the configured limit per token (``API_RATE_LIMIT``, e.g. "600 per minute")."""
    return str(current_app.config.get("API_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
