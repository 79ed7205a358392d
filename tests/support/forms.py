"""Posting forms as a browser would: the session's CSRF token, read from a page."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """Return the CSRF token of the client's session, read from the page at ``path``."""
    match = _CSRF.search(client.get(path).get_data(as_text=True))
    assert match is not None, path
    return match.group(1)
