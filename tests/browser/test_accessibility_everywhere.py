"""Every page, for every role, in every language passes axe-core's WCAG 2.2 AA rules.

The pages come from ``app.url_map``: ``ENDPOINTS`` says, for every GET endpoint, which URL to
open (with the ids of the seeded objects) and which roles see it, or why it is not a page. A
new endpoint missing from the table fails the test, so no page can be forgotten. Coverage is
counted from the pages actually checked (each URL is matched back to its endpoint), so a page
that redirected elsewhere does not count as checked.

The data is real and seeded through the services: consent given and withdrawn, batches stored
through the vault, deletion requests in several states, an objection, a collector, a second
notice with a material change. The error states are checked too: forms sent with mistakes,
the 404 page and the 403 page. One browser context per role, signed in once through the real
provider; each language is chosen with the header's language form; pages in sequence. SQLite
only: the pages do not depend on the backend, and the browser's time is the cost.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from flask import Flask
from playwright.sync_api import Page
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from portal.api.service import register_collector
from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, parse_catalog, read_catalog_file
from portal.catalog.models import NoticeVersion
from portal.catalog.notices import current_notice, find_section
from portal.catalog.objections import file_objection
from portal.catalog.publication import load_catalog, publish_notice
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent, withdraw_consent
from portal.db import commit, db
from portal.i18n import LANGUAGES
from portal.requests import service as requests_service
from portal.requests.models import DeletionScope
from portal.vault.ingest import find_category
from tests.support.batches import iso, keystroke_events, recent
from tests.support.browser import (
    AXE,
    axe_violations,
    migrated_sqlite_database,
    screenshot,
    sign_in_with_form,
)
from tests.support.identity import ACCOUNTS, PASSWORD, ROLE_MAP
from tests.support.vault import ingest

pytestmark = pytest.mark.browser

ANONYMOUS, EMPLOYEE, HR, DPO, ADMIN = "anonymous", "employee", "hr", "dpo", "admin"
#: The account each signed-in role uses (see ``tests.support.identity.ACCOUNTS``).
ACCOUNT_OF = {EMPLOYEE: "alex", HR: "chris", DPO: "dana", ADMIN: "eli"}
SIGNED_IN = (EMPLOYEE, HR, DPO, ADMIN)
ROLES = (ANONYMOUS, *SIGNED_IN)


@dataclass(frozen=True)
class Shown:
    """A page: the URLs to open (``{name}`` is a seeded object's id) and who sees it."""

    urls: tuple[str, ...]
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Reached:
    """A page reached only by sending a form (a step of a flow, or a form's answer)."""

    how: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class NotAPage:
    """An endpoint that answers with something other than an HTML page."""

    what: str


def shown(*urls: str, roles: tuple[str, ...] = SIGNED_IN) -> Shown:
    """Describe a page; by default every signed-in role sees it (for their own data)."""
    return Shown(urls, roles)


#: Every GET endpoint of the portal. Add a line here when you add one. (The demo identity
#: provider's pages exist in demo mode only; tests/auth/test_demo_idp.py checks them.)
ENDPOINTS: dict[str, Shown | Reached | NotAPage] = {
    "core.dashboard": shown("/", roles=ROLES),
    "core.healthz": NotAPage("JSON for the process supervisor"),
    "core.readyz": NotAPage("JSON for the load balancer"),
    "metrics": NotAPage("Prometheus text for monitoring"),
    "auth.login": NotAPage("redirect to the identity provider"),
    "auth.callback": NotAPage("redirect back from the identity provider"),
    "auth.logout": shown("/auth/logout"),
    "catalog.index": shown("/categories/"),
    # A consent category (paused by the material change for Alex) and an objectable one.
    "catalog.show": shown("/categories/keystrokes", "/categories/sensitivity_ratings"),
    "consent.history": shown("/consent/history"),
    "consent.receipt_jws": NotAPage("download: signed consent receipt (JWS)"),
    "consent.receipt_pdf": NotAPage("download: consent receipt (PDF)"),
    "consent.jwks": NotAPage("JSON: the receipt signing keys"),
    "admin.webhook_deliveries": shown("/consent/admin/webhooks", roles=(ADMIN,)),
    "exports.my_data": shown("/my-data"),
    "training.my_training": shown("/my-data/training"),
    "exports.download_form": shown("/my-data/download"),
    "audit.access_log": shown("/access-log"),
    "requests.index": shown("/requests/"),
    "requests.new": shown("/requests/new"),
    # Alex's own requests; anyone else gets the 404 page for them.
    "requests.show": shown("/requests/{received}", "/requests/{refused}",
                          "/requests/{executed}", roles=(EMPLOYEE,)),
    "requests.submitted": shown("/requests/{received}/submitted", roles=(EMPLOYEE,)),
    "requests.cancel": shown("/requests/{received}/cancel", roles=(EMPLOYEE,)),
    "requests.certificate_jws": NotAPage("download: signed certificate of deletion (JWS)"),
    "requests.certificate_pdf": NotAPage("download: certificate of deletion (PDF)"),
    "hr.index": shown("/hr/", roles=(HR, DPO)),
    "dpo.queue": shown("/dpo/requests", roles=(DPO,)),
    "dpo.show": shown("/dpo/requests/{received}", "/dpo/requests/{approved}",
                     "/dpo/requests/{executed}", roles=(DPO,)),
    "dpo.approve": shown("/dpo/requests/{received}/approve", roles=(DPO,)),
    "dpo.approve_in_part": shown("/dpo/requests/{received}/approve-in-part", roles=(DPO,)),
    "dpo.refuse": shown("/dpo/requests/{received}/refuse", roles=(DPO,)),
    "dpo.extend": shown("/dpo/requests/{received}/extend", roles=(DPO,)),
    "dpo.confirm": shown("/dpo/requests/{approved}/confirm", roles=(DPO,)),
    "dpo.execute": shown("/dpo/requests/{approved}/execute", roles=(DPO,)),
    "dpo.executed": shown("/dpo/requests/{executed}/executed", roles=(DPO,)),
    "dpo.objection": shown("/dpo/objections/{objection}", roles=(DPO,)),
    "admin.index": shown("/admin/", roles=(ADMIN,)),
    "admin.notice": shown("/admin/notices/1", "/admin/notices/2", roles=(ADMIN,)),
    "admin.new_notice": shown("/admin/notices/new", roles=(ADMIN,)),
    "admin.review_notice": Reached("step 2 after handing in a catalog", (ADMIN,)),
    "admin.check_notice": Reached("step 3 after the review", (ADMIN,)),
    "collectors.index": shown("/admin/collectors/", roles=(ADMIN,)),
    "training_admin.index": shown("/admin/training/snapshots", roles=(ADMIN,)),
    "collectors.create": shown("/admin/collectors/new", roles=(ADMIN,)),
    "collectors.revoke": shown("/admin/collectors/{collector}/revoke", roles=(ADMIN,)),
    "api.consent": NotAPage("collector API (JSON)"),
    "api.consent_changes": NotAPage("collector API (JSON)"),
    "api.openapi_document": NotAPage("collector API description (JSON)"),
    "static": NotAPage("stylesheet and other static files"),
}

#: A page that exists for no one, and for each role a page it may not open.
NOT_FOUND = "/no-such-page"
FORBIDDEN = {EMPLOYEE: "/hr/", HR: "/dpo/requests", DPO: "/admin/", ADMIN: "/hr/"}
#: A few pages per role to look at (test-artifacts/screenshots/a11y-*.png).
SCREENSHOTS = {
    ANONYMOUS: ("core.dashboard", "error 404"),
    EMPLOYEE: ("core.dashboard", "catalog.show", "requests.show", "exports.my_data",
               "training.my_training",
               "requests.new (errors)", "error 403"),
    HR: ("hr.index",),
    DPO: ("dpo.queue", "dpo.show", "dpo.objection"),
    ADMIN: ("admin.index", "collectors.index", "admin.new_notice (errors)",
            "training_admin.index"),
}


# --- the database: SQLite only ---------------------------------------------------------------

@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Replace the two-backend database of the conftest: SQLite only, at the latest schema."""
    return migrated_sqlite_database(tmp_path / "portal.sqlite3")


# --- the data the pages show -----------------------------------------------------------------

def _person(who: str, issuer: str) -> Person:
    """Create the person as their first sign-in through the provider would."""
    account = ACCOUNTS[who]
    return sign_in({"sub": account.sub, "name": account.name, "email": account.email,
                    "groups": list(account.groups)}, issuer=issuer, roles_claim="groups",
                   role_map=ROLE_MAP)


def _publish_material_change(key: str) -> None:
    current = db.scalar(select(NoticeVersion).order_by(NoticeVersion.number.desc()))
    assert current is not None
    raw = copy.deepcopy(current.document)
    for entry in raw["categories"]:
        if entry["key"] == key:
            for text in entry["text"].values():
                text["summary"] += " Keystrokes now also train the meeting summariser."
    document = parse_catalog(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    publish_notice(document, published_by="tests", dpo_sign_off="Dana Novak, 2026-11-20",
                   change_summary={code: "Keystrokes also train the meeting summariser."
                                   for code in LANGUAGES},
                   material={key: "A new purpose."})


def seed(app: Flask, issuer: str) -> dict[str, Any]:
    """Fill the portal with real content; return the ids the URLs need."""
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        collector, _token, _secret = register_collector(
            "Laptop agent", ["keystrokes", "pointer", "clicks"], webhook_url="http://127.0.0.1:9/")
        people = {who: _person(who, issuer) for who in ("alex", "bea", "chris", "dana", "eli")}
        alex, dana = people["alex"], people["dana"]
        notice = current_notice()
        assert notice is not None
        for who, keys in (("alex", ("keystrokes", "pointer", "clicks", "conversations")),
                          ("bea", ("pointer",)), ("chris", ("clicks",))):
            for key in keys:
                grant_consent(people[who], find_category(key), notice_version=notice,
                              method=ConsentMethod.WEB, actor=people[who])
        ingest(alex, "keystrokes", keystroke_events("git status", "make test", start=recent(300)))
        ingest(alex, "pointer", [{"t": iso(recent(90)), "x": 10, "y": 20, "screen": 1,
                                  "app": "Browser"}])
        ingest(alex, "clicks", [{"t": iso(recent(80)), "x": 5, "y": 6, "button": "left",
                                 "app": "Editor", "target_role": "button",
                                 "target_label": "Run tests"}])
        withdraw_consent(alex, find_category("clicks"), method=ConsentMethod.WEB, actor=alex)
        commit()
        ids: dict[str, Any] = {"collector": collector.id}
        submit = requests_service.submit_deletion_request
        executed = submit(alex, scope=DeletionScope.CATEGORIES, categories=["clicks"],
                          reason="I withdrew my consent for clicks.")
        requests_service.approve_deletion(executed, dpo=dana)
        commit()
        requests_service.execute_deletion(executed, actor=dana)
        refused = submit(alex, scope=DeletionScope.CATEGORIES, categories=["pointer"])
        requests_service.refuse_request(refused, dpo=dana,
                                        reason="A legal hold applies until the audit ends.")
        approved = submit(alex, scope=DeletionScope.CATEGORIES,
                          categories=["keystrokes", "pointer"])
        requests_service.approve_deletion(approved, dpo=dana, reason="Nothing needs keeping.")
        received = submit(alex, scope=DeletionScope.ALL, reason="I am leaving the company.")
        section = find_section("sensitivity_ratings")
        assert section is not None
        objection = file_objection(alex, section, "My ratings say too much about my projects.")
        commit()
        ids.update(executed=executed.reference, refused=refused.reference,
                   approved=approved.reference, received=received.reference,
                   objection=objection.id)
        _publish_material_change("keystrokes")
        commit()
        return ids


# --- checking pages --------------------------------------------------------------------------

@dataclass
class Findings:
    """What axe found, and for which role and language each endpoint was checked."""

    app: Flask
    violations: list[dict[str, Any]] = field(default_factory=list)
    checked: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    pages: int = 0

    def endpoint_of(self, url: str) -> str:
        """Match a URL of the portal back to its endpoint."""
        path = urlsplit(url).path
        try:
            endpoint, _arguments = self.app.url_map.bind("localhost").match(path)
        except HTTPException:
            return "(no endpoint)"
        return str(endpoint)

    def check(self, tab: Page, role: str, language: str, *, label: str = "") -> None:
        """Run axe on the page as it is now and note what it found."""
        lang, *width = tab.evaluate("[document.documentElement.lang, "
                                    "document.documentElement.scrollWidth, window.innerWidth]")
        assert lang == language, tab.url
        endpoint = label or self.endpoint_of(tab.url)
        self.pages += 1
        self.checked[endpoint].add((role, language))
        # Not an axe rule: a page wider than the window scrolls sideways (long words of a
        # language in a table that cannot wrap, for example).
        if width[0] > width[1]:
            self.violations.append({"page": tab.url, "endpoint": endpoint, "role": role,
                                    "language": language, "rule": "page-wider-than-window",
                                    "widths": width})
        for item in axe_violations(tab):
            self.violations.append({
                "page": tab.url, "endpoint": endpoint, "role": role, "language": language,
                "rule": item["id"], "impact": item["impact"], "help": item["help"],
                "targets": [node["target"] for node in item["nodes"]][:5],
                "html": [node["html"][:160] for node in item["nodes"]][:3]})


def open_page(tab: Page, url: str, status: int = 200) -> None:
    response = tab.goto(url)
    assert response is not None and response.status == status, (url, response and
                                                                response.status)


def send(tab: Page, submit: str, status: int = 400) -> None:
    """Send the form whose submit button ``submit`` selects; expect ``status``."""
    with tab.expect_navigation() as sent:
        tab.locator(submit).click()
    response = sent.value
    assert response is not None and response.status == status, (tab.url, response.status)
    assert tab.locator(".error-summary").count() == 1, tab.url


def switch_language(tab: Page, language: str) -> None:
    """Choose the language with the header's form, as a person would."""
    tab.select_option("#locale-select", language)
    with tab.expect_navigation():
        tab.locator(".locale-form [type=submit]").click()
    assert tab.locator("html").get_attribute("lang") == language


def form_errors(tab: Page, role: str, ids: dict[str, Any], check: Any) -> None:
    """Open each form of the role and send it with mistakes (an error state per form)."""
    if role == EMPLOYEE:
        open_page(tab, "/requests/new")
        send(tab, "main #submit")
        check("requests.new (errors)")
        open_page(tab, "/categories/sensitivity_ratings")
        send(tab, "main form[action$='/objections'] [type=submit]")
        check("catalog.object_to (errors)")
        open_page(tab, "/my-data/download")
        for box in tab.locator("input[name=categories]").all():
            box.uncheck()
        send(tab, "main form.download-form [type=submit]")
        check("exports.download (errors)")
    if role == DPO:
        # The decision pages share their form layout; the richest one stands for them all.
        open_page(tab, f"/dpo/requests/{ids['received']}/approve-in-part")
        send(tab, "main #submit")
        check("dpo.approve_in_part (errors)")
        open_page(tab, f"/dpo/objections/{ids['objection']}")
        send(tab, "main #submit")
        check("dpo.objection (errors)")
    if role == ADMIN:
        open_page(tab, "/admin/collectors/new")
        send(tab, "main #submit")
        check("collectors.create (errors)")
        open_page(tab, "/admin/notices/new")
        send(tab, "main #submit")
        check("admin.new_notice (errors)")
        raw = yaml.safe_load(SHIPPED_CATALOG.read_text(encoding="utf-8"))
        raw["categories"][0]["text"]["en"]["summary"] += " Also on the second screen."
        # Typing 80 kB into the field would take the browser longer than the whole page.
        tab.locator("#catalog_text").evaluate(
            "(field, text) => { field.value = text; }",
            yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
        with tab.expect_navigation():
            tab.locator("main #submit").click()
        assert tab.url.endswith("/admin/notices/new/review"), tab.url
        check()
        send(tab, "main #submit")
        check("admin.review_notice (errors)")
        tab.fill("#dpo_sign_off", "Dana Novak, 2026-11-20")
        for summary in tab.locator("textarea[id^=summary_]").all():
            summary.fill("The pointer summary names the second screen.")
        with tab.expect_navigation():
            tab.locator("main #submit").click()
        assert tab.url.endswith("/admin/notices/new/check"), tab.url
        check()


def own_pages_language(role: str) -> str:
    """The language in which a role other than the employee checks the employee's pages.

    Those pages are the same templates for every role (only the navigation differs, and it is
    checked on each role's own pages in every language); the employee checks them in every
    language with real data. Spreading the other roles over the languages keeps the test
    within its time budget.
    """
    languages = list(LANGUAGES)
    return languages[SIGNED_IN.index(role) % len(languages)]


def visit_as(browser: Any, base_url: str, findings: Findings, role: str, ids: dict[str, Any],
             shots: set[tuple[str, str, str]]) -> None:
    """Open every page of the role in every language in one context, in sequence."""
    context = browser.new_context(base_url=base_url, locale="en-GB")
    context.set_default_timeout(15_000)
    # axe-core in every page from the start, rather than sent over for each page: a tenth faster.
    context.add_init_script(path=str(AXE))
    tab = context.new_page()
    try:
        if role == ANONYMOUS:
            open_page(tab, "/")
        else:
            sign_in_with_form(tab, base_url, ACCOUNTS[ACCOUNT_OF[role]].sub, PASSWORD,
                              next_path="/consent/history")
        for language in LANGUAGES:
            switch_language(tab, language)

            def check(label: str = "", language: str = language) -> None:
                findings.check(tab, role, language, label=label)
                name = label or findings.endpoint_of(tab.url)
                if (language == next(iter(LANGUAGES)) and name in SCREENSHOTS[role]
                        and (role, language, name) not in shots):
                    shots.add((role, language, name))
                    screenshot(tab, f"a11y-{role}-{language}-{name}".replace(" ", "-")
                               .replace("(", "").replace(")", ""))

            for endpoint, entry in ENDPOINTS.items():
                if not isinstance(entry, Shown) or role not in entry.roles:
                    continue
                if (entry.roles == SIGNED_IN and role != EMPLOYEE and endpoint != "core.dashboard"
                        and language != own_pages_language(role)):
                    continue
                for url in entry.urls:
                    open_page(tab, url.format(**ids))
                    check()
            open_page(tab, NOT_FOUND, 404)
            check("error 404")
            if role in FORBIDDEN:
                open_page(tab, FORBIDDEN[role], 403)
                check("error 403")
            form_errors(tab, role, ids, check)
    finally:
        context.close()


def test_every_page_for_every_role_in_every_language_passes_axe(
        app: Flask, live_server: str, browser: Any, idp: Any) -> None:
    get_endpoints = {rule.endpoint for rule in app.url_map.iter_rules()
                     if "GET" in (rule.methods or ())}
    missing = sorted(get_endpoints - set(ENDPOINTS))
    assert not missing, f"add these GET endpoints to ENDPOINTS (a page, or why not): {missing}"
    ids = seed(app, idp[0].issuer)

    findings = Findings(app)
    shots: set[tuple[str, str, str]] = set()
    for role in ROLES:
        visit_as(browser, live_server, findings, role, ids, shots)

    # Every page for every role that sees it, and every page in every language.
    unchecked = {}
    for endpoint, entry in ENDPOINTS.items():
        if isinstance(entry, NotAPage) or endpoint not in get_endpoints:
            continue
        done = findings.checked[endpoint]
        lacking = sorted({f"role {role}" for role in entry.roles
                          if not any(who == role for who, _language in done)}
                         | {f"language {code}" for code in LANGUAGES
                            if not any(language == code for _who, language in done)})
        if lacking:
            unchecked[endpoint] = lacking
    assert not unchecked, f"pages not checked (did they redirect elsewhere?): {unchecked}"
    assert not findings.violations, (
        f"axe found {len(findings.violations)} violations on {findings.pages} pages:\n"
        + json.dumps(findings.violations, indent=1, ensure_ascii=False))
