"""Rate limits (Flask-Limiter), counted in a shared store when one is configured.

With the default in-memory store each process counts for itself; in production, set
PORTAL_RATELIMIT_STORAGE_URL to a Redis URL to count across processes and hosts.

When the shared store cannot be reached, requests are still limited, counted in each
process's memory until the store answers again: a Redis outage must not become a portal
outage. Pages use Flask-Limiter's own in-memory fallback; the collector API, which counts its
requests itself, uses :class:`FallbackCounter`.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from flask import Flask, Response, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage
from limits.strategies import RateLimiter

limiter = Limiter(key_func=get_remote_address)
log = logging.getLogger(__name__)

#: While the shared store is down, one request of the collector API tries it again at most
#: this often, per process (pages: Flask-Limiter's own back-off, from 1 s up to 32 s).
RECHECK_SECONDS = 3.0
#: How long to wait for Redis to connect or to answer before counting in memory instead. It
#: answers in well under a millisecond; without a limit, a host that drops packets would hold
#: every request for minutes (the kernel's connect timeout). A ``?socket_timeout=`` or
#: ``?socket_connect_timeout=`` in the URL wins.
REDIS_TIMEOUT_SECONDS = 1.0


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
    url = str(app.config["RATELIMIT_STORAGE_URL"])
    app.config["RATELIMIT_STORAGE_URI"] = url
    # No X-RateLimit-* headers on every answer: they cost two more reads of the store per
    # request (in Redis, two more round trips than the count itself). Refusals still carry
    # Retry-After, below.
    app.config["RATELIMIT_HEADERS_ENABLED"] = False
    shared = not url.startswith("memory://")
    if shared:
        # Counted in this process's memory while the store is down, with the same limits;
        # Flask-Limiter tries the store again, backing off, and returns to it once it answers.
        app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = True
        if url.startswith(("redis://", "rediss://", "redis+unix://")):
            app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {
                "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
                "socket_timeout": REDIS_TIMEOUT_SECONDS})
        # Flask-Limiter warns once per thread that finds the store down, and says it is back
        # at INFO only: the portal says both itself, once each (StoreWatch).
        logging.getLogger("flask-limiter").setLevel(logging.ERROR)
    # The collector API is served by an app of its own (portal.api.app), without
    # Flask-Limiter's hooks: it counts its requests itself (count_request, FallbackCounter).
    limiter.init_app(app)
    global _api_counter  # one per process, beside the one Limiter
    _api_counter = None
    if not limiter.enabled:  # RATELIMIT_ENABLED=False: nothing is counted anywhere
        return
    store = describe_store(url)
    failures = storage_failures(limiter.storage)
    # The strategy Flask-Limiter chose for this configuration (fixed window by default).
    _api_counter = FallbackCounter(limiter.storage, type(limiter.limiter),
                                   watch=StoreWatch("collector API", store))

    @app.after_request
    def _retry_after(response: Response) -> Response:
        if response.status_code != 429:
            return response
        limit = limiter.current_limit
        if limit is not None and limit.breached:
            try:
                reset_at = limit.reset_at
            except failures:  # the store went down since it refused: its whole window
                reset_at = time.time() + limit.limit.get_expiry()
            # Whole seconds until the window that refused the request ends (RFC 9110 10.2.3).
            response.headers.setdefault(
                "Retry-After", str(max(1, math.ceil(reset_at - time.time()))))
        return response

    if shared:
        pages = StoreWatch("pages", store)

        @app.after_request
        def _note_store(response: Response) -> Response:
            # Flask-Limiter counts in its in-memory store exactly while it holds the shared
            # one for dead: two attribute reads per page, to say so once each way.
            pages.note(in_memory=limiter.limiter.storage is not limiter.storage)
            return response


def describe_store(url: str) -> str:
    """Return where the store is, for logs: scheme, host, port and path, never credentials.

    ``redis://:secret@host:6379/0?password=...`` becomes ``redis://host:6379/0``.
    """
    scheme, _, rest = url.partition("://")
    location = rest.split("?", 1)[0].split("#", 1)[0]
    authority, slash, path = location.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def storage_failures(storage: Storage) -> tuple[type[Exception], ...]:
    """Return what ``storage`` raises when it cannot count.

    For Redis, any RedisError (refused, timed out, read-only replica, out of memory); nothing
    for the in-memory store, which has no outage to survive.
    """
    if isinstance(storage, MemoryStorage):
        return ()
    failures = storage.base_exceptions
    return (StorageError, *(failures if isinstance(failures, tuple) else (failures,)))


class StoreWatch:
    """Say, once each way, that a part of the portal counts in memory or in the store again."""

    def __init__(self, part: str, store: str) -> None:
        self.part = part
        self.store = store
        self.in_memory = False
        self._lock = threading.Lock()

    def note(self, *, in_memory: bool, error: BaseException | None = None) -> None:
        """Record where the part counts now; log a warning if that changed."""
        if in_memory == self.in_memory:
            return
        with self._lock:  # of threads that see the change at once, one logs it
            if in_memory == self.in_memory:
                return
            self.in_memory = in_memory
        if in_memory:
            log.warning("the rate-limit store is unreachable: counting in this process's memory "
                        "until it answers again", extra={
                            "part": self.part, "store": self.store,
                            "error": type(error).__name__ if error else None})
        else:
            log.warning("the rate-limit store answers again: counting there again",
                        extra={"part": self.part, "store": self.store})


class FallbackCounter:
    """Count requests in the shared store, or in this process's memory while it is down.

    Without the store's answer a request could only be refused or let through uncounted; in
    memory it is still limited, per process. While the store is down, one request every
    :data:`RECHECK_SECONDS` is counted in it again (no separate ping); the first that
    succeeds brings every request back to it. While it is up, a count is what it was: one
    call of the strategy, one round trip.
    """

    def __init__(self, storage: Storage, strategy: type[RateLimiter], *,
                 watch: StoreWatch) -> None:
        self.strategy = strategy
        self.shared = strategy(storage)
        #: Made at the first outage: nothing to make, and no timer thread, until then.
        self.memory: RateLimiter | None = None
        self.failures = storage_failures(storage)
        self.watch = watch
        #: When to try the store again; ``None`` while counting in it.
        self.retry_at: float | None = None
        self._retrying = threading.Lock()
        self._falling_back = threading.Lock()

    def hit(self, limit: RateLimitItem, *identifiers: str) -> float | None:
        """Count one request; return ``None`` if allowed, else when the refusing window ends."""
        if self.retry_at is None:
            try:
                return _count(self.shared, limit, identifiers)
            except self.failures as error:
                return _count(self._fall_back(error), limit, identifiers)
        if time.monotonic() >= self.retry_at and self._retrying.acquire(blocking=False):
            try:  # this request tries the store; the others count in memory meanwhile
                answer = _count(self.shared, limit, identifiers)
            except self.failures:
                self.retry_at = time.monotonic() + RECHECK_SECONDS
            else:
                self.retry_at = None
                self.watch.note(in_memory=False)
                return answer
            finally:
                self._retrying.release()
        return _count(self._fall_back(None), limit, identifiers)

    def _fall_back(self, error: Exception | None) -> RateLimiter:
        """Return the in-memory counter; on a new failure, try the store again later."""
        if error is None and self.memory is not None:
            return self.memory
        with self._falling_back:
            if self.memory is None:
                self.memory = self.strategy(MemoryStorage())
            if error is not None:
                self.retry_at = time.monotonic() + RECHECK_SECONDS
        if error is not None:
            self.watch.note(in_memory=True, error=error)
        return self.memory


def _count(counter: RateLimiter, limit: RateLimitItem, identifiers: tuple[str, ...],
           ) -> float | None:
    if counter.hit(limit, *identifiers):
        return None
    reset_at, _remaining = counter.get_window_stats(limit, *identifiers)
    return reset_at


#: The collector API's counter, one per process like the Limiter it counts beside (read on
#: every API request: a module attribute costs a twentieth of an ``app.extensions`` lookup).
_api_counter: FallbackCounter | None = None


def api_counter() -> FallbackCounter | None:
    """Return the collector API's counter (``None`` when rate limits are turned off)."""
    return _api_counter
