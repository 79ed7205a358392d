"""The baselines of the consent-check benchmark, served by the same gunicorn as the portal.

``/`` is the goal's baseline: a bare Flask hello-world. ``/db`` is context for the figures
(no goal): the same bare Flask app running the portal's consent statement, the one database
read a consent check needs, straight through psycopg (prepared, autocommit, one connection
per thread), and answering its row as JSON: no portal, no rate limit, no SQLAlchemy. It shows
what a database read per request costs on this machine by itself. ``/one`` runs ``SELECT 1``
the same way: the least that any answer read from the database costs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import orjson
from flask import Flask, Response, request

app = Flask(__name__)
_local = threading.local()


@app.get("/")
def hello() -> str:
    """Answer as cheaply as Flask can."""
    return "Hello, World!"


def _statement() -> tuple[str, dict[str, Any]]:
    from sqlalchemy.dialects.postgresql import psycopg as dialect

    from portal.api.service import _consent_statement

    compiled = _consent_statement().compile(dialect=dialect.dialect())
    return str(compiled), compiled.construct_params(_check=False)


def _connection() -> Any:
    connection = getattr(_local, "connection", None)
    if connection is None:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(os.environ["PORTAL_DATABASE_URL"]).set(drivername="postgresql")
        connection = psycopg.connect(url.render_as_string(hide_password=False),
                                     autocommit=True)
        _local.connection = connection
    return connection


# Compiled when the worker starts, like the portal's statements: not on the first request.
SQL, FIXED = _statement()


@app.get("/one")
def round_trip() -> Response:
    """Run ``SELECT 1``: the least that any answer read from the database costs (context)."""
    row = _connection().execute("SELECT 1", prepare=True).fetchone()
    return Response(orjson.dumps({"row": list(row or ())}), mimetype="application/json")


@app.get("/db")
def database_read() -> Response:
    """Run the consent check's one statement and answer its row (context, not the baseline)."""
    token = request.headers.get("Authorization", "")[7:]
    row = _connection().execute(SQL, {
        **FIXED, "token_hash": hashlib.sha256(token.encode()).hexdigest(),
        "issuer": request.args.get("issuer", "http://127.0.0.1:9"),
        "subject": request.args.get("subject", ""),
        "category_key": request.args.get("category", "")}, prepare=True).fetchone()
    return Response(orjson.dumps({"row": [str(value) for value in row or ()]}),
                    mimetype="application/json")
