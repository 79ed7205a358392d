"""Log lines an operator can collect: one JSON object per line, each tagged with its request.

Every line written while a request is served carries ``request_id`` (the caller's
``X-Request-ID`` when it is a sane token, else a new one; echoed in the answer), and every
request ends with one access line. The access line names the route template, never the query
string, a token, a cookie, a name or an e-mail address.

A logged value cannot forge a line: the JSON formatter escapes CR, LF and quotes inside the
field, and the text formatter (for the demo) writes CR and LF as a backslash and a letter.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from typing import TextIO

from flask import Flask, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter
from werkzeug.wrappers import Response

#: The logger of the one line per request.
access_log = logging.getLogger("portal.access")
#: An incoming request id is kept only when it is this: short, and nothing a log reader or a
#: terminal could misread (no spaces, quotes, control characters or markup).
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
REQUEST_ID_HEADER = "X-Request-ID"
#: The fields every JSON line starts with; anything given as ``extra=`` follows them.
JSON_FIELDS = "{asctime}{levelname}{name}{message}"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
#: The fields of the access line, in order.
ACCESS_FIELDS = ("method", "route", "status", "duration_ms")
#: A path no route matched is logged cut to this length (it is whatever the caller sent).
MAX_LOGGED_PATH = 200
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Put the current request's id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record; never drop it."""
        if not hasattr(record, "request_id"):
            request_id = g.get("request_id") if has_request_context() else None
            record.request_id = request_id or "-"
        return True


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, then extras."""

    def __init__(self) -> None:
        super().__init__(JSON_FIELDS, style="{", rename_fields=JSON_RENAMES)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Write the time as ISO 8601 in UTC, to the millisecond."""
        moment = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(record.msecs):03d}Z"


class TextLineFormatter(logging.Formatter):
    """Lines for a person at a terminal, with CR and LF in values made visible."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Format the line, so that no value in it can start a line of its own."""
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        line = super().formatMessage(record)
        extras = {key: value for key, value in record.__dict__.items()
                  if key in ACCESS_FIELDS}
        if extras:
            line += " " + " ".join(f"{key}={value}" for key, value in extras.items())
        return line.replace("\r", "\\r").replace("\n", "\\n")


class StandardErrorHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Write to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        """Return the current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def log_format(app: Flask) -> str:
    """Return the configured log format: JSON unless chosen otherwise or in demo mode."""
    chosen = str(app.config.get("LOG_FORMAT") or "")
    if chosen:
        return chosen
    return "text" if app.config.get("DEMO") else "json"


def make_formatter(kind: str) -> logging.Formatter:
    """Return the formatter of a log format (``json`` or ``text``)."""
    return JsonLineFormatter() if kind == "json" else TextLineFormatter()


def configure_logging(app: Flask) -> None:
    """Send every log record to standard error, in the configured format, tagged by request.

    The handler goes on the root logger, so the portal's loggers and the libraries' share it;
    an earlier one of ours (another app in the same process, as in tests) is replaced.
    """
    level = getattr(logging, app.config["LOG_LEVEL"])
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, StandardErrorHandler):
            root.removeHandler(handler)
    handler = StandardErrorHandler()
    handler.setFormatter(make_formatter(log_format(app)))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(level)
    app.logger.setLevel(level)
    # Flask's own handler would write each of the app's lines a second time, in its format.
    app.logger.handlers.clear()
    # The access lines are INFO: PORTAL_LOG_LEVEL=WARNING turns them off with the rest.
    access_log.setLevel(logging.NOTSET)
    # WeasyPrint logs each stylesheet it parses at INFO: progress, not operations.
    logging.getLogger("weasyprint.progress").setLevel(max(level, logging.WARNING))


def incoming_request_id(value: str | None) -> str:
    """Return the caller's request id when it is a sane token, else a new one."""
    if value and SAFE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Give every request an id, put it on the answer, and write one access line per request.

    Registered before every other part, so the id is there for every line the others write
    (``before_request`` runs in order of registration) and the access line sees the final
    status (``after_request`` runs in reverse order).
    """

    @app.before_request
    def _begin() -> None:
        g.request_id = incoming_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_started = time.perf_counter()

    @app.after_request
    def _end(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is None:  # a request whose first hook failed still gets an id
            request_id = g.request_id = incoming_request_id(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        duration = time.perf_counter() - started if started is not None else 0.0
        access_log.info("request", extra={
            "method": request.method, "route": route_of_request(),
            "status": response.status_code, "duration_ms": round(duration * 1000, 2)})
        return response


def route_of_request() -> str:
    """Return the route template that served the request (its path when none matched).

    A template (``/requests/<reference>``) says which page without whose; the path is the
    fallback for a request no route matched, and never carries the query string.
    """
    rule = request.url_rule
    return rule.rule if rule is not None else request.path[:MAX_LOGGED_PATH]
