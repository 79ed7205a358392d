"""The authorization matrix: who may use each route, A's objects to aim at, and the walk.

The table names every endpoint of the portal (built without demo mode) with who may use it.
The walk requests every rule of ``app.url_map`` with every method it accepts (HEAD and
OPTIONS aside) as one caller, fills each URL variable with A's real objects, their sequential
neighbours and guessed values, and judges each answer against the table.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from portal.api.service import create_collector, revoke_collector
from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.catalog.document import SHIPPED_CATALOG, read_catalog_file
from portal.catalog.models import CategoryNotice
from portal.catalog.notices import current_notice
from portal.catalog.objections import file_objection
from portal.catalog.publication import load_catalog
from portal.consent.models import ConsentMethod
from portal.consent.service import grant_consent
from portal.db import commit, db
from portal.requests import service as requests_service
from portal.requests.models import DeletionScope
from portal.vault.checks import parse_timestamp
from portal.vault.ingest import find_category, ingest_batch
from tests.support.batches import iso, keystroke_batch
from tests.support.identity import ACCOUNTS, ROLE_MAP

PERSONS = ("alex", "bea", "chris", "dana", "eli")
CALLERS = ("anonymous", *PERSONS, "collector", "revoked collector", "scraper")
#: The token of the Prometheus scraper at /metrics (tests only; configured by the test module).
METRICS_TOKEN = "metrics-token-of-the-matrix-tests-0123456789"
#: Text typed by A and stored encrypted: only A may ever see it again.
CONTENT_CANARY = "canary-typed-by-alex-7f3a"
#: A's reason for objecting: A and the DPO deciding on it may read it, nobody else.
OBJECTION_CANARY = "canary-objection-reason-of-alex-91c2"
SIGN_IN_PATH = "/auth/login"
REFUSALS = {401, 403, 404, 405}
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


class Access(enum.Enum):
    """Who may use an endpoint."""

    PUBLIC = "everyone, signed in or not"
    PERSON = "every signed-in person, for their own data"
    OWNER = "only the person the object in the URL belongs to"
    HR_DPO = "HR and the DPO"
    DPO = "the DPO"
    ADMIN = "the privacy admin"
    COLLECTOR = "a collector with a valid token"
    SCRAPER = "the metrics scraper, with its own token"

    @property
    def callers(self) -> frozenset[str]:
        """Return the callers this access lets in (for OWNER: when the object is A's)."""
        return frozenset({
            Access.PUBLIC: CALLERS, Access.PERSON: PERSONS, Access.OWNER: ("alex",),
            Access.HR_DPO: ("chris", "dana"), Access.DPO: ("dana",), Access.ADMIN: ("eli",),
            Access.COLLECTOR: ("collector",), Access.SCRAPER: ("scraper",)}[self])


#: Every endpoint of the portal and who may use it. A route missing here fails the test.
TABLE: dict[str, Access] = {
    # Public: the welcome page, sign-in, health, the language switch, published keys.
    "core.dashboard": Access.PUBLIC,
    "core.set_locale": Access.PUBLIC,
    "core.healthz": Access.PUBLIC,
    "core.readyz": Access.PUBLIC,
    "static": Access.PUBLIC,
    "auth.login": Access.PUBLIC,
    "auth.callback": Access.PUBLIC,  # answers 400 to anything but the provider's redirect
    "auth.logout": Access.PUBLIC,
    "consent.jwks": Access.PUBLIC,
    "api.openapi_document": Access.PUBLIC,
    # Each signed-in person, about themselves.
    "catalog.index": Access.PERSON,
    "catalog.show": Access.PERSON,
    "catalog.object_to": Access.PERSON,
    "consent.grant": Access.PERSON,
    "consent.refuse": Access.PERSON,
    "consent.withdraw": Access.PERSON,
    "consent.withdraw_all": Access.PERSON,
    "consent.history": Access.PERSON,
    "exports.my_data": Access.PERSON,
    "training.my_training": Access.PERSON,
    "exports.download_form": Access.PERSON,
    "exports.download": Access.PERSON,
    "audit.access_log": Access.PERSON,
    "requests.index": Access.PERSON,
    "requests.new": Access.PERSON,
    # One person's objects, by id in the URL.
    "consent.receipt_jws": Access.OWNER,
    "consent.receipt_pdf": Access.OWNER,
    "requests.show": Access.OWNER,
    "requests.submitted": Access.OWNER,
    "requests.cancel": Access.OWNER,
    "requests.certificate_jws": Access.OWNER,
    "requests.certificate_pdf": Access.OWNER,
    # HR and the DPO: consent records (metadata, never content).
    "hr.index": Access.HR_DPO,
    "hr.export": Access.HR_DPO,
    # The DPO: data-subject requests and objections of anyone.
    "dpo.queue": Access.DPO,
    "dpo.show": Access.DPO,
    "dpo.approve": Access.DPO,
    "dpo.approve_in_part": Access.DPO,
    "dpo.refuse": Access.DPO,
    "dpo.extend": Access.DPO,
    "dpo.confirm": Access.DPO,
    "dpo.execute": Access.DPO,
    "dpo.execute_now": Access.DPO,
    "dpo.executed": Access.DPO,
    "dpo.objection": Access.DPO,
    "dpo.extend_objection": Access.DPO,
    # The privacy admin: notices, collectors, delivery of withdrawals.
    "admin.index": Access.ADMIN,
    "admin.notice": Access.ADMIN,
    "admin.new_notice": Access.ADMIN,
    "admin.review_notice": Access.ADMIN,
    "admin.check_notice": Access.ADMIN,
    "collectors.index": Access.ADMIN,
    "collectors.create": Access.ADMIN,
    "collectors.revoke": Access.ADMIN,
    "admin.webhook_deliveries": Access.ADMIN,
    "training_admin.index": Access.ADMIN,
    # Collectors, by bearer token.
    "api.consent": Access.COLLECTOR,
    "api.consent_changes": Access.COLLECTOR,
    "api.submit_batch": Access.COLLECTOR,
    "api.acknowledge_change": Access.COLLECTOR,
    # Operations: counts only, for the scraper holding the metrics token.
    "metrics": Access.SCRAPER,
}

#: Routes only demo mode has: its built-in identity provider, which anyone may talk to (its
#: token and userinfo endpoints check their own codes and tokens; tests/auth/test_demo_idp.py).
DEMO_TABLE: dict[str, Access] = {
    "demo_idp.discovery": Access.PUBLIC,
    "demo_idp.authorize": Access.PUBLIC,
    "demo_idp.end_session": Access.PUBLIC,
    "demo_idp.jwks": Access.PUBLIC,
    "demo_idp.token": Access.PUBLIC,
    "demo_idp.userinfo": Access.PUBLIC,
}

#: Answers an allowed caller may get for a real object, besides success (the reason each).
EXPECTED_FAILURES: dict[tuple[str, str], set[int]] = {
    # Without the provider's code and state, every sign-in completion is refused.
    ("auth.callback", ""): {400},
    # The open request has no certificate (and is not executed) until the DPO executes it.
    ("requests.certificate_jws", "open request"): {404},
    ("requests.certificate_pdf", "open request"): {404},
}


#: Complete forms for the POSTs whose answer is data: the export itself is walked, not only
#: its form errors. Every other POST carries the caller's CSRF token alone.
FORMS: dict[str, dict[str, str]] = {
    "hr.export": {"purpose": "Authorization matrix of the tests", "format": "json"},
}


# --- A's world -------------------------------------------------------------------------------

@dataclass
class Target:
    """A value for a URL variable: one of A's real objects, or a value that names nothing."""

    value: str
    label: str
    real: bool


@dataclass
class AlexWorld:
    """A's objects (and the collectors' tokens), made through the real services."""

    receipts: list[str]
    executed_request: str
    open_request: str
    certificate_id: str
    objection_id: int
    collector_id: int
    revoked_collector_id: int
    notice_number: int
    tokens: dict[str, str]

    def markers(self) -> dict[str, str]:
        """Return the strings that betray A's data, by what they are."""
        account = ACCOUNTS["alex"]
        return {"content": CONTENT_CANARY, "objection reason": OBJECTION_CANARY,
                "name": account.name, "email": account.email,
                **{f"receipt {index}": receipt for index, receipt in enumerate(self.receipts)},
                "executed request": self.executed_request, "open request": self.open_request,
                "certificate": self.certificate_id}

    def targets(self, variable: str) -> list[Target]:
        """Return the values tried for a URL variable: real ones first, then neighbours and
        guesses."""
        if variable == "receipt_id":
            real = self.receipts[0]
            return [Target(real, "receipt", True),
                    # The portal reads any spelling of a UUID: A's own, in capitals, works too.
                    Target(real.upper(), "receipt in capitals", True),
                    *_uuid_neighbours(real)[1:], *_guessed_uuids()[:1]]
        if variable == "reference":
            return [Target(self.executed_request, "executed request", True),
                    Target(self.open_request, "open request", True),
                    *_uuid_neighbours(self.executed_request)[1:], *_guessed_uuids()[:1]]
        if variable == "objection_id":
            return [Target(str(self.objection_id), "objection", True),
                    *_int_neighbours(self.objection_id), *_guessed_ints()]
        if variable == "collector_id":
            return [Target(str(self.collector_id), "collector", True),
                    Target(str(self.revoked_collector_id), "revoked collector", True),
                    *_int_neighbours(self.collector_id, self.revoked_collector_id),
                    *_guessed_ints()]
        if variable == "number":
            return [Target(str(self.notice_number), "notice", True),
                    *_int_neighbours(self.notice_number), *_guessed_ints()]
        if variable == "key":
            return [Target("keystrokes", "category on consent", True),
                    Target("sensitivity_ratings", "category on legitimate interest", True),
                    Target("no_such_category", "guessed", False)]
        if variable == "filename":
            return [Target("portal.css", "stylesheet", True),
                    Target("../../pyproject.toml", "guessed", False),
                    Target("no-such-file.css", "guessed", False)]
        raise AssertionError(f"no values for the URL variable <{variable}>: add them here")


def _uuid_neighbours(value: str) -> list[Target]:
    number = uuid.UUID(value).int
    return [Target(str(uuid.UUID(int=number + step)), "neighbour", False) for step in (-1, 1)]


def _guessed_uuids() -> list[Target]:
    return [Target(str(uuid.UUID(int=0)), "guessed", False), Target("1", "guessed", False)]


def _int_neighbours(*real: int) -> list[Target]:
    return [Target(str(min(real) - 1), "neighbour", False),
            Target(str(max(real) + 1), "neighbour", False)]


def _guessed_ints() -> list[Target]:
    # Past the database's integer range: an id nobody can have is a 404, never a crash.
    return [Target(str(2**31), "guessed", False), Target(str(2**63), "guessed", False)]


def _person(app: Flask, who: str) -> Person:
    account = ACCOUNTS[who]
    claims = {"sub": account.sub, "name": account.name, "email": account.email,
              "groups": list(account.groups), "department": account.department,
              "location": account.location}
    # The provider's issuer: the real sign-in later finds this same person.
    return sign_in(claims, issuer=str(app.config["OIDC_ISSUER"]), roles_claim="groups",
                   role_map=ROLE_MAP)


def build_alex_world(app: Flask) -> AlexWorld:
    """Publish the catalog and give A consent receipts, collected content, an executed and an
    open deletion request, an objection; register a collector and a revoked one."""
    with app.app_context():
        load_catalog(read_catalog_file(SHIPPED_CATALOG), published_by="tests")
        alex, dana = _person(app, "alex"), _person(app, "dana")
        notice = current_notice()
        assert notice is not None
        receipts = []
        for key in ("keystrokes", "pointer"):
            event = grant_consent(alex, find_category(key), notice_version=notice,
                                  method=ConsentMethod.WEB, actor=alex)
            assert event is not None
            receipts.append(event.receipt_id)
        body = keystroke_batch("sub-alex", CONTENT_CANARY, minutes_ago=120)
        start, end = parse_timestamp(body["collected_from"]), parse_timestamp(body["collected_to"])
        assert start is not None and end is not None
        ingest_batch(alex, find_category("keystrokes"), events=body["events"],
                     collected_from=start, collected_to=end, dss_level=2)
        ingest_batch(alex, find_category("pointer"), events=[
            {"t": iso(start), "x": 1, "y": 2, "screen": 1, "app": "browser"}],
            collected_from=start, collected_to=start, dss_level=1)
        executed = requests_service.submit_deletion_request(
            alex, scope=DeletionScope.CATEGORIES, categories=["pointer"])
        requests_service.approve_deletion(executed, dpo=dana)
        commit()
        requests_service.execute_deletion(executed, actor=dana)
        open_request = requests_service.submit_deletion_request(
            alex, scope=DeletionScope.ALL, reason="Please delete everything.")
        section = db.get(CategoryNotice, (notice.id, "sensitivity_ratings"))
        assert section is not None
        objection = file_objection(alex, section, OBJECTION_CANARY)
        collector, token, _secret = create_collector("matrix agent", ["keystrokes"])
        revoked, revoked_token, _secret = create_collector("retired agent", ["keystrokes"])
        revoke_collector(revoked)
        commit()
        published = current_notice()
        assert published is not None and executed.certificate_id
        return AlexWorld(
            receipts=receipts, executed_request=executed.reference,
            open_request=open_request.reference, certificate_id=executed.certificate_id,
            objection_id=objection.id, collector_id=collector.id,
            revoked_collector_id=revoked.id, notice_number=published.number,
            tokens={"collector": token, "revoked collector": revoked_token,
                    "scraper": METRICS_TOKEN})


# --- the walk --------------------------------------------------------------------------------

def walked_rules(app: Flask) -> list[Rule]:
    """Return the rules in the order walked: sign-out last, so the caller stays signed in."""
    return sorted(app.url_map.iter_rules(),
                  key=lambda rule: (rule.endpoint == "auth.logout", rule.rule, rule.endpoint))


def methods_of(rule: Rule) -> list[str]:
    """Return the methods a rule accepts, except those Flask adds for every rule."""
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def untabled_endpoints(app: Flask) -> tuple[set[str], set[str]]:
    """Return the endpoints missing from the table, and the table's entries no rule has."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    return endpoints - TABLE.keys(), TABLE.keys() - endpoints


def csrf_token(client: FlaskClient, headers: dict[str, str]) -> str:
    """Read the caller's own CSRF token from the page every caller may open."""
    match = _CSRF.search(client.get("/", headers=headers).get_data(as_text=True))
    assert match is not None, "no CSRF token on the dashboard"
    return match.group(1)


def api_request(endpoint: str) -> dict[str, Any]:
    """Return a well-formed request for a collector API endpoint, about A."""
    if endpoint == "api.consent":
        return {"query_string": {"subject": "sub-alex", "category": "keystrokes"}}
    if endpoint == "api.submit_batch":
        return {"json": keystroke_batch("sub-alex", "typed by the matrix")}
    if endpoint == "api.acknowledge_change":
        return {"json": {"subject": "sub-alex", "category": "keystrokes",
                         "change_cursor": "1", "action": "stopped", "last_event_at": None}}
    return {}


def may_see(caller: str, access: Access, marker: str) -> bool:
    """Say whether ``caller`` may find A's ``marker`` in an answer of an ``access`` endpoint.

    A sees everything of theirs. HR sees names and consent record ids (the receipt ids, which
    open nothing for anyone but A) in the consent records; the DPO sees names, requests and
    objections in the queue as well. Content: A alone, ever.
    """
    if caller == "alex":
        return True
    if marker in {"name", "email"}:
        return (caller, access) in {("chris", Access.HR_DPO), ("dana", Access.HR_DPO),
                                    ("dana", Access.DPO)}
    if marker.startswith("receipt"):
        return (caller, access) in {("chris", Access.HR_DPO), ("dana", Access.HR_DPO)}
    if marker in {"executed request", "open request", "objection reason", "certificate"}:
        return (caller, access) == ("dana", Access.DPO)
    return False


@dataclass
class Walk:
    """What one caller's walk did and found."""

    caller: str
    requests: int = 0
    unexpected_successes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    responses: list[tuple[str, TestResponse]] = field(default_factory=list)


def _is_sign_in_redirect(response: TestResponse) -> bool:
    return (response.status_code in {301, 302, 303, 307, 308}
            and urlsplit(response.headers.get("Location", "")).path == SIGN_IN_PATH)


def _urls(rule: Rule, world: AlexWorld) -> Iterator[tuple[str, Target | None]]:
    """Yield every URL of a rule, with the target filling its variable (None: no variable)."""
    variables = sorted(rule.arguments)
    if not variables:
        yield rule.rule, None
        return
    assert len(variables) == 1, f"{rule.rule}: several URL variables, extend the walk"
    name = variables[0]
    pattern = re.compile(r"<(?:[^:<>]+:)?" + name + r">")
    for target in world.targets(name):
        yield pattern.sub(target.value, rule.rule), target


def walk(app: Flask, client: FlaskClient, caller: str, world: AlexWorld) -> Walk:
    """Request every rule with every method as ``caller`` and judge each answer."""
    result = Walk(caller)
    headers = ({"Authorization": f"Bearer {world.tokens[caller]}"}
               if caller in world.tokens else {})
    token = csrf_token(client, headers)
    markers = world.markers()
    for rule in walked_rules(app):
        access = TABLE[rule.endpoint]
        for method in methods_of(rule):
            for url, target in _urls(rule, world):
                options: dict[str, Any] = {"headers": headers}
                if rule.endpoint.startswith("api."):
                    options |= api_request(rule.endpoint)
                elif method == "POST":
                    options["data"] = {"csrf_token": token, **FORMS.get(rule.endpoint, {})}
                response = client.open(url, method=method, **options)
                result.requests += 1
                what = f"{method} {url} ({rule.endpoint}" + \
                    (f", {target.label})" if target else ")")
                result.responses.append((rule.endpoint, response))
                problem = judge(caller, access, rule.endpoint, target, response)
                status = response.status_code
                result.outcomes[f"{status}" if not _is_sign_in_redirect(response)
                                else "sign-in"] += 1
                if problem == "unexpected success":
                    result.unexpected_successes.append(f"{what}: {status}")
                elif problem:
                    result.problems.append(f"{what}: {status}: {problem}")
                body = response.get_data()
                for marker, value in markers.items():
                    if value.lower() in url.lower():
                        continue  # the caller wrote it into the URL: echoing it tells nothing
                    if value.encode() in body and not may_see(caller, access, marker):
                        result.problems.append(f"{what}: {status}: shows A's {marker}")
    return result


def judge(caller: str, access: Access, endpoint: str, target: Target | None,
          response: TestResponse) -> str | None:
    """Return what is wrong with an answer, or ``None``."""
    status = response.status_code
    refused = status in REFUSALS or _is_sign_in_redirect(response)
    if status >= 500:
        return "server error"
    allowed = caller in access.callers
    if not allowed:
        if 200 <= status < 300:
            return "unexpected success"
        return None if refused else "expected a refusal (401, 403, 404, 405, sign-in)"
    if target is not None and not target.real:
        # Allowed in, but the id names nothing (or nothing of A's): it must not be found.
        if 200 <= status < 300:
            return "unexpected success"
        return None if refused else "expected 404 for an id that names nothing"
    label = target.label if target else ""
    if status in EXPECTED_FAILURES.get((endpoint, label), set()):
        return None
    if refused:
        return "refused, but the table lets this caller in"
    if 400 <= status < 500 and response.request.method == "GET":
        return "a page the table lets this caller open failed"
    return None
