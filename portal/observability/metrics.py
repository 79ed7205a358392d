"""Prometheus metrics: requests, latencies, ingestion, refusals, and the DPO's open requests.

Counters and the latency histogram live in this process; under gunicorn with several workers
set ``PROMETHEUS_MULTIPROC_DIR`` (the shipped ``gunicorn.conf.py`` makes one when it is not
set, and forgets each dead worker's gauges in ``child_exit``), and every worker's counts are
summed at each scrape. The open and overdue requests are read from the database at scrape
time, in one query, so every worker reports the same truth.

``/metrics`` answers only a scraper presenting ``Authorization: Bearer <PORTAL_METRICS_TOKEN>``,
and does not exist (404) while no token is configured.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import Select, case, func, literal, select, union_all
from werkzeug.wrappers import Response

from portal.db import db, utcnow

#: Endpoint label of a request that no route matched (its path would be unbounded).
UNMATCHED = "none"

REQUESTS = Counter("portal_http_requests", "HTTP requests answered, by endpoint, method and "
                   "status.", ["endpoint", "method", "status"])
LATENCY = Histogram("portal_http_request_duration_seconds", "Time from the start of a request "
                    "until its answer was ready (a streamed body not included), by endpoint.",
                    ["endpoint"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                                           5.0, 10.0, 30.0))
INGESTED_BATCHES = Counter("portal_ingested_batches", "Batches stored by the collector API "
                           "(a recognised retry is not counted again), by category.",
                           ["category"])
INGESTED_EVENTS = Counter("portal_ingested_events", "Events in the batches stored by the "
                          "collector API, by category.", ["category"])
REFUSED_BATCHES = Counter("portal_refused_batches", "Batches the collector API refused, by "
                          "the error code of its answer (consent_required, invalid_request, "
                          "...).", ["reason"])


def count_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    label = endpoint or UNMATCHED
    REQUESTS.labels(label, method, str(status)).inc()
    LATENCY.labels(label).observe(seconds)


def count_ingested_batch(category_key: str, events: int, *, created: bool) -> None:
    """Count a batch the collector API stored (nothing for a recognised retry)."""
    if created:
        INGESTED_BATCHES.labels(category_key).inc()
        INGESTED_EVENTS.labels(category_key).inc(events)


def count_refused_batch(reason: str) -> None:
    """Count a refused batch submission, by the error code of the answer."""
    if request.endpoint == "api.submit_batch":
        REFUSED_BATCHES.labels(reason).inc()


#: Where the packages that keep requests with a legal deadline register them (``app.extensions``).
DEADLINE_KINDS = "portal.metrics.deadline_kinds"


@dataclass(frozen=True)
class DeadlineKind:
    """A kind of request with a legal deadline: its label, its table, the states it is open in.

    The table needs ``state`` and ``due_at`` columns. The package that owns the requests
    registers it (:func:`register_deadline_kind`): metrics sits below every feature package
    and must not import them.
    """

    kind: str
    table: Any
    open_states: tuple[str, ...]


def register_deadline_kind(app: Flask, kind: DeadlineKind) -> None:
    """Report ``kind``'s open and overdue requests in the ``portal_requests_*`` gauges."""
    app.extensions.setdefault(DEADLINE_KINDS, []).append(kind)


class OpenRequestsCollector(Collector):
    """The DPO's open requests by kind and state, and how many are overdue, read at scrape."""

    def __init__(self, kinds: list[DeadlineKind]) -> None:
        self.kinds = kinds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the counts in one query and report them as gauges."""
        now = utcnow()

        def counts(kind: DeadlineKind) -> Select[tuple[str, str, int, int]]:
            table = kind.table
            overdue = func.sum(case((table.due_at < now, 1), else_=0))
            return (select(literal(kind.kind), table.state, func.count(), overdue)
                    .where(table.state.in_(kind.open_states)).group_by(table.state))

        rows = db.execute(union_all(*map(counts, self.kinds))).all() if self.kinds else []
        opened = GaugeMetricFamily("portal_requests_open", "Requests not yet finished, by kind "
                                   "(deletion, objection) and state.", labels=["kind", "state"])
        overdue = GaugeMetricFamily("portal_requests_overdue", "Requests not yet finished whose "
                                    "legal deadline has passed, by kind.", labels=["kind"])
        late = {kind.kind: 0 for kind in self.kinds}
        for kind, state, count, past_due in rows:
            opened.add_metric([kind, str(getattr(state, "value", state))], count)
            late[kind] += int(past_due or 0)
        for kind, count in late.items():
            overdue.add_metric([kind], count)
        yield opened
        yield overdue


def exposition() -> bytes:
    """Return every metric in Prometheus's text format: all workers' counts, then the gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    gauges = CollectorRegistry()
    gauges.register(OpenRequestsCollector(current_app.extensions.get(DEADLINE_KINDS, [])))
    return generate_latest(processes) + generate_latest(gauges)


def _authorised(token: str) -> bool:
    presented = request.headers.get("Authorization", "")
    scheme, _, credentials = presented.partition(" ")
    # Compared in constant time, as bytes: a timing difference must not spell the token out.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode())


def metrics() -> Response:
    """Serve the metrics to a scraper holding the token; 404 while no token is configured."""
    token = str(current_app.config.get("METRICS_TOKEN") or "")
    if not token:
        abort(404)
    if not _authorised(token):
        return Response("A bearer token is required.\n", 401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"',
                                 "Cache-Control": "no-store"})
    return Response(exposition(), 200, headers={"Content-Type": CONTENT_TYPE_LATEST,
                                                "Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Serve ``/metrics`` and count every answered request."""
    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
    count_requests(app)


def count_requests(app: Flask) -> None:
    """Count every request ``app`` answers, and its latency (``/metrics`` reports them)."""

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("request_started")  # set by portal.observability.logs
        seconds = time.perf_counter() - started if started is not None else 0.0
        count_request(request.endpoint, request.method, response.status_code, seconds)
        return response
