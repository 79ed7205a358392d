"""Rate limits (Flask-Limiter), counted in a shared store when one is configured.

With the default in-memory store each process counts for itself; in production, set
PORTAL_RATELIMIT_STORAGE_URL to a Redis URL to count across processes and hosts.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def _serialise_memory_expiry() -> None:
    """Stop the in-memory store from starting its expiry timer twice (a 500 under threads).

    limits' MemoryStorage replaces and starts its timer without a lock: two threads of one
    gthread worker can both replace it, then start the same one twice ("threads can only be
    started once"). Fixed upstream by alisaifee/limits#352, not yet released in 5.8.0; until
    then the scheduling is serialised here (a no-op once the method is gone or locked).
    """
    from limits.storage import MemoryStorage

    schedule = getattr(MemoryStorage, "_MemoryStorage__schedule_expiry", None)
    if schedule is None or getattr(schedule, "serialised", False):
        return
    lock = threading.Lock()

    def serialised(self: MemoryStorage) -> None:
        with lock:
            schedule(self)

    serialised.serialised = True  # type: ignore[attr-defined]
    MemoryStorage._MemoryStorage__schedule_expiry = serialised  # type: ignore[attr-defined]


_serialise_memory_expiry()
#: The blueprint that counts its requests itself (portal.api.auth.count_request).
SELF_COUNTING_BLUEPRINT = "api"


def sign_in_limit() -> str:
    """Return the limit on starting and finishing sign-ins, per client address."""
    return str(current_app.config["SIGN_IN_RATE_LIMIT"])


def download_limit() -> str:
    """Return the limit on downloads of one's own data, per person."""
    return str(current_app.config["DOWNLOAD_RATE_LIMIT"])


def export_limit() -> str:
    """Return the limit on HR's consent-record exports, per person."""
    return str(current_app.config["EXPORT_RATE_LIMIT"])


def per_person() -> str:
    """Key a limit by the signed-in person (by address for anyone else)."""
    from flask_login import current_user

    if current_user.is_authenticated:
        return f"person:{current_user.get_id()}"
    return get_remote_address()


def init_app(app: Flask) -> None:
    """Hand the configured store and limits to Flask-Limiter; refusals say when to come back."""
    app.config["RATELIMIT_STORAGE_URI"] = app.config["RATELIMIT_STORAGE_URL"]
    # No X-RateLimit-* headers on every answer: they cost two more reads of the store per
    # request (in Redis, two more round trips than the count itself). Refusals still carry
    # Retry-After, below.
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    hooks = _hook_lists(app)
    before = {name: list(functions) for name, functions in hooks.items()}
    limiter.init_app(app)
    # Flask-Limiter's own hooks (resolve the limits, count, clean up) have nothing to do for
    # the collector API, which counts itself; profiled, they still cost the API a tenth of
    # its per-request time just to find that out. They run for every other request.
    for name, functions in hooks.items():
        functions[:] = [function if function in before[name] else _not_for_api(function)
                        for function in functions]

    @app.after_request
    def _retry_after(response: Response) -> Response:
        if response.status_code != 429 or request.blueprint == SELF_COUNTING_BLUEPRINT:
            return response  # the API's own refusals carry their Retry-After already
        limit = limiter.current_limit
        if limit is not None and limit.breached:
            # Whole seconds until the window that refused the request ends (RFC 9110 10.2.3).
            response.headers.setdefault(
                "Retry-After", str(max(1, math.ceil(limit.reset_at - time.time()))))
        return response


def _hook_lists(app: Flask) -> dict[str, list[Callable[..., Any]]]:
    return {"before": app.before_request_funcs.setdefault(None, []),
            "after": app.after_request_funcs.setdefault(None, []),
            "teardown": app.teardown_request_funcs.setdefault(None, [])}


def _not_for_api(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Flask-Limiter hook so that requests to the collector API skip it."""

    @functools.wraps(hook)
    def run(*args: Any) -> Any:
        if request.blueprint == SELF_COUNTING_BLUEPRINT:
            # An after_request hook must hand the response on; the others return nothing.
            return args[0] if args and isinstance(args[0], Response) else None
        return hook(*args)

    return run
