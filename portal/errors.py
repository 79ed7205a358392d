"""Error pages that say what happened in plain words and reveal nothing internal."""

from __future__ import annotations

import logging

import psycopg
from flask import Flask, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable
from werkzeug.wrappers import Response

log = logging.getLogger(__name__)

TITLES = {
    400: _l("The request could not be processed"),
    401: _l("Please sign in"),
    403: _l("You do not have access to this page"),
    404: _l("Page not found"),
    405: _l("This action is not allowed here"),
    413: _l("What you sent is too large"),
    429: _l("Too many requests"),
    500: _l("Something went wrong on our side"),
    503: _l("The portal is briefly unavailable"),
}
EXPLANATIONS = {
    400: _l("Something in the request was missing or not valid. Nothing was changed."),
    401: _l("Please sign in to continue."),
    403: _l("Your role does not allow this. If you think it should, ask your privacy team."),
    404: _l("There is nothing at this address. Check the link, or go back to the start page."),
    405: _l("This page cannot be used that way. Nothing was changed."),
    413: _l("The upload is larger than the portal accepts. Nothing was stored."),
    429: _l("You have made many requests in a short time. Please wait a minute and try again."),
    500: _l("The error has been recorded. Nothing was half-saved: please try again later."),
    503: _l("The portal cannot reach its database right now. Nothing was changed. Please try "
            "again in a few minutes."),
}


def render_error(error: HTTPException) -> tuple[Response | str, int]:
    """Render ``error`` as a page, or as JSON for API clients."""
    code = error.code or 500
    # A description we wrote when aborting is meant for the person; werkzeug's defaults are
    # replaced by our translated explanation.
    custom = error.description if error.description != type(error).description else None
    message = str(custom or EXPLANATIONS.get(code, EXPLANATIONS[500]))
    if request.path.startswith("/api/"):
        response = jsonify(error=error.name.lower().replace(" ", "_"), message=message)
        return response, code
    return render_template("errors/error.html", code=code,
                           title=TITLES.get(code, TITLES[500]), message=message), code


def init_app(app: Flask) -> None:
    """Register the error pages."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> tuple[Response | str, int]:
        return render_error(error)

    @app.errorhandler(OperationalError)
    def _database_down(error: OperationalError) -> tuple[Response | str, int]:
        log.error("database unavailable: %s", type(error.orig).__name__)
        return render_error(ServiceUnavailable())

    # The driver's own error, when it reaches us unwrapped: Engine.raw_connection() (the
    # collector API's fast reads) lets a failed connect through as it is.
    @app.errorhandler(psycopg.OperationalError)
    def _database_down_raw(error: psycopg.OperationalError) -> tuple[Response | str, int]:
        log.error("database unavailable: %s", type(error).__name__)
        return render_error(ServiceUnavailable())

    @app.errorhandler(Exception)
    def _crash(error: Exception) -> tuple[Response | str, int]:
        if isinstance(error, HTTPException):
            return render_error(error)
        log.exception("unhandled error")
        return render_error(InternalServerError())
