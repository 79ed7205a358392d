"""Printed documents (receipts, certificates, reports) rendered from templates by WeasyPrint.

Templates get primitive values only (strings, numbers, lists and dicts of them): a document
cannot reach into the database or lazily load anything while it is being laid out, and what
it shows is exactly what the caller chose to show. Rendering fetches nothing from outside:
the URL fetcher serves the portal's own static stylesheets and refuses everything else
(``file:``, ``http(s):`` anywhere, ``data:``), so a template can never leak a request or read a
file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import render_template
from weasyprint import HTML
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

STATIC = Path(__file__).resolve().parent / "static"
#: The base URL documents are laid out under; only stylesheets below it are served.
BASE_URL = "https://portal.invalid/static/"


class RefusedURL(FatalURLFetchingError):
    """A document tried to load something that is not one of the portal's stylesheets."""


class StaticOnlyFetcher(URLFetcher):
    """Serve the portal's static ``.css`` files; refuse every other URL."""

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        """Return a static stylesheet, or raise :class:`RefusedURL`."""
        if not url.startswith(BASE_URL):
            raise RefusedURL(f"documents may not load {url.split(':', 1)[0]}: URLs ({url!r})")
        name = unquote(urlsplit(url).path).removeprefix(urlsplit(BASE_URL).path)
        path = (STATIC / name).resolve()
        if path.suffix != ".css" or STATIC.resolve() not in path.parents or not path.is_file():
            raise RefusedURL(f"documents may load only the portal's own stylesheets ({url!r})")
        return URLFetcherResponse(url, body=path.read_bytes(),
                                  headers={"Content-Type": "text/css; charset=utf-8"})


Primitive = str | int | float | bool | None


def _check_primitive(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_primitive(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings")
            _check_primitive(item, f"{where}.{key}")
        return
    if isinstance(value, dt.datetime | dt.date):
        raise TypeError(f"{where}: format dates before rendering (the reader's time zone)")
    raise TypeError(f"{where}: {type(value).__name__} is not a primitive value")


def render_pdf(template: str, **context: Any) -> bytes:
    """Render ``template`` with primitive ``context`` values to PDF bytes."""
    for name, value in context.items():
        _check_primitive(value, name)
    html = render_template(template, **context)
    document = HTML(string=html, base_url=BASE_URL, url_fetcher=StaticOnlyFetcher())
    pdf: bytes = document.write_pdf()
    return pdf
