"""Who is calling the collector API: bearer tokens, their scopes, and how many requests each sends.

Only the ``Authorization: Bearer <token>`` header authenticates; a browser's session cookie
is never looked at, so a signed-in page cannot be turned into an API call (no CSRF route in).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from sqlalchemy.exc import DBAPIError

from portal.api.errors import ApiError
from portal.api.service import CollectorIdentity, hash_token, identify_collector
from portal.db import db
from portal.limits import api_counter, limiter

log = logging.getLogger(__name__)
T = TypeVar("T")

#: What the portal advertises to clients that did not authenticate (RFC 6750, section 3).
REALM = 'Bearer realm="collector-api"'
DEFAULT_RATE_LIMIT = "600 per minute"


def _presented_token() -> str | None:
    """Return the bearer token of the request, ``""`` if the header is malformed, else ``None``."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


def first_statement(run: Callable[[], T]) -> T:
    """Run the request's first statement; once more if its pooled connection had been dropped.

    The pool does not ping a connection before lending it (see
    :func:`portal.db.create_portal_engine`), so after the database restarted or failed over,
    the first statement of a request is what finds a dead connection; SQLAlchemy then
    discards it and the rest of the pool. Nothing has been read or written before the first
    statement, so running it again, on a new connection, is safe: the collector never sees
    the failure.
    """
    try:
        return run()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    log.warning("a pooled database connection had been dropped; running the first statement "
                "of the request again on a new one")
    db.rollback()
    if g.get("api_without_transaction"):
        read_without_transaction()
    return run()


def read_without_transaction() -> None:
    """Run this request's statements outside a transaction (for reads of one statement each).

    Each read is then one round trip: no BEGIN before it and no COMMIT after it.
    """
    db.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    g.api_without_transaction = True


def require_token(*, holder: str = "the collector's token") -> str:
    """Return the request's bearer token; refuse with 401 when it has none (no query needed).

    :param holder: whose token the refusal asks for ("the training client's token").
    """
    token = _presented_token()
    if token is None:
        raise ApiError(401, "unauthorized", f"Send {holder} in the header "
                       "'Authorization: Bearer <token>'.", headers={"WWW-Authenticate": REALM})
    if not token:
        raise _invalid_token()
    return token


def _invalid_token() -> ApiError:
    return ApiError(401, "unauthorized", "The token is not valid. Check that the whole token "
                    "is sent, as issued.",
                    headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})


#: Where higher packages register how to recognise their own tokens (in ``app.extensions``).
OTHER_TOKENS = "portal.api.other_tokens"
#: Given a token that is no collector's, the sentence saying what it is instead, or None.
TokenRecogniser = Callable[[str], str | None]


def register_other_token(app: Flask, recognise: TokenRecogniser) -> None:
    """Let the collector API say what a token that is not a collector's is instead.

    A training client's token, say: a machine sent to the wrong door is told which door is
    its own, instead of hearing that its token is invalid.

    Asked only once a token was found to be no collector's: a valid request costs nothing.
    """
    app.extensions.setdefault(OTHER_TOKENS, []).append(recognise)


def _not_a_collector_token() -> ApiError:
    token = _presented_token()
    if token:
        for recognise in current_app.extensions.get(OTHER_TOKENS, []):
            if (sentence := recognise(token[:1024])) is not None:
                return ApiError(401, "unauthorized", sentence, headers={
                    "WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    return _invalid_token()


def accept_collector(collector: CollectorIdentity | None) -> CollectorIdentity:
    """Return the collector a token belongs to; refuse with 401 if none or if it is revoked."""
    if collector is None:
        raise _not_a_collector_token()
    if collector.revoked:
        raise ApiError(401, "unauthorized", "This token was revoked. Ask the privacy admin for "
                       "a new collector token.",
                       headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
    return collector


def require_collector() -> CollectorIdentity:
    """Return the calling collector, or refuse with 401 (missing, unknown or revoked token).

    Looked up once per request, as its first statement.
    """
    if "api_collector" not in g:
        token = require_token()
        g.api_collector = accept_collector(first_statement(lambda: identify_collector(token)))
    collector: CollectorIdentity = g.api_collector
    return collector


def require_scope(collector: CollectorIdentity, category_key: str) -> None:
    """Refuse with 403 unless ``collector`` is registered for ``category_key``."""
    if not collector.records(category_key):
        raise ApiError(403, "category_not_allowed",
                       f"This token is not registered for category {category_key!r}; it may "
                       "use: " + ", ".join(collector.categories or []) + ".")


#: The one budget of a token, across every endpoint: a collector cannot spread its load.
RATE_LIMIT_SCOPE = "collector-api"


def count_request() -> None:
    """Count the request against its token's budget; refuse with 429 once that is spent.

    Counted with Flask-Limiter's strategy and store (``RATELIMIT_STORAGE_URL``: in memory, or
    shared in Redis), but not through its per-request machinery: resolving which limits
    apply to a request, for every call, cost the API several times the count itself. While
    the shared store is down, each process counts in its memory (``FallbackCounter``).
    """
    if not limiter.enabled:  # RATELIMIT_ENABLED=False turns every limit of the portal off
        return
    counter = api_counter()
    if counter is None:  # this application was set up with rate limits turned off
        return
    limit = _parsed_limit(rate_limit())
    reset_at = counter.hit(limit, RATE_LIMIT_SCOPE, rate_limit_key())
    if reset_at is None:
        return
    raise ApiError(429, "too_many_requests", f"Too many requests for this token (the limit is "
                   f"{limit}). Wait as the Retry-After header says, then send again.",
                   headers={"Retry-After": str(max(1, math.ceil(reset_at - time.time())))})


@functools.lru_cache(maxsize=16)
def _parsed_limit(text: str) -> RateLimitItem:
    return parse(text)


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
