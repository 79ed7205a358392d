"""The demo provider's logic: its people, its signing key, its client secret, codes and tokens.

Nothing here is used outside demo mode. Functions only flush; the request commits, except
where a refused request must still leave a trace (a replayed code revokes its tokens).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from joserfc.jwk import RSAKey
from sqlalchemy import delete, exists, select, update

from portal.auth.demo.models import DemoAccessToken, DemoAuthorizationCode
from portal.auth.models import Person
from portal.auth.service import map_roles
from portal.db import db, utcnow

PEOPLE_FILE = Path(__file__).resolve().parent.parent / "demo_people.yaml"
KEY_FILE = "demo-idp-key.json"
SIGNING_ALGORITHM = "RS256"
# RFC 6749 4.1.2 recommends at most ten minutes; the portal redeems a code at once.
CODE_LIFETIME = dt.timedelta(minutes=2)
ACCESS_TOKEN_LIFETIME = dt.timedelta(minutes=10)
ID_TOKEN_LIFETIME = dt.timedelta(minutes=10)
# Changing this label changes the demo client's secret (and nothing else).
CLIENT_SECRET_LABEL = b"portal demo identity provider: client secret v1"


class DemoSetupError(Exception):
    """The demo provider cannot start; the message names the file and what is wrong."""


@dataclass(frozen=True)
class DemoPerson:
    """An invented person of the demo provider, as ``demo_people.yaml`` describes them."""

    sub: str
    name: str
    email: str
    department: str
    location: str
    groups: tuple[str, ...]
    zoneinfo: str
    locale: str


def load_people(path: Path = PEOPLE_FILE) -> dict[str, DemoPerson]:
    """Read the demo people, keyed by subject, refusing a malformed file at start."""
    try:
        entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoSetupError(f"{path}: cannot read the demo people: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise DemoSetupError(f"{path}: expected a list of people")
    people: dict[str, DemoPerson] = {}
    text_fields = ("sub", "name", "email", "department", "location", "zoneinfo", "locale")
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise DemoSetupError(f"{path}: entry {number} is not a mapping")
        missing = [name for name in text_fields
                   if not isinstance(entry.get(name), str) or not entry[name]]
        groups = entry.get("groups", [])
        if missing or not isinstance(groups, list) or not all(
                isinstance(group, str) for group in groups):
            problem = f"missing {', '.join(missing)}" if missing else "groups must be a list"
            raise DemoSetupError(f"{path}: entry {number}: {problem}")
        unknown = set(entry) - {*text_fields, "groups"}
        if unknown:
            raise DemoSetupError(f"{path}: entry {number}: unknown keys {sorted(unknown)}")
        if entry["sub"] in people:
            raise DemoSetupError(f"{path}: subject {entry['sub']!r} appears twice")
        people[entry["sub"]] = DemoPerson(
            **{name: entry[name] for name in text_fields}, groups=tuple(groups))
    return people


def describe_person(person: DemoPerson, scope: str) -> dict[str, Any]:
    """Return the claims about ``person`` that ``scope`` allows (ID token and userinfo)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": person.sub}
    if "profile" in scopes:
        # Groups, department and location are not standard claims; like most company
        # providers, the demo gives them with the profile.
        claims.update(name=person.name, zoneinfo=person.zoneinfo, locale=person.locale,
                      groups=list(person.groups), department=person.department,
                      location=person.location)
    if "email" in scopes:
        claims.update(email=person.email, email_verified=True)
    return claims


def portal_roles(person: DemoPerson, *, roles_claim: str,
                 role_map: Mapping[str, list[str]]) -> list[str]:
    """Return the portal roles ``person`` will get, exactly as sign-in will map them."""
    return map_roles(describe_person(person, "openid profile email"), roles_claim, role_map)


def record_demo_people(people: Mapping[str, DemoPerson], *, issuer: str, roles_claim: str,
                       role_map: Mapping[str, list[str]]) -> int:
    """Make sure every demo person exists in the portal; return how many were added.

    So that HR and the DPO see the whole invented staff before each has signed in once.
    Sign-in refreshes the same rows (same issuer and subject) later.
    """
    added = 0
    for person in people.values():
        record = db.scalar(select(Person).where(Person.issuer == issuer,
                                                Person.subject == person.sub))
        if record is None:
            # The language stays unset, as after a sign-in: the person's browser decides.
            record = Person(issuer=issuer, subject=person.sub, timezone=person.zoneinfo)
            db.add(record)
            added += 1
        record.name, record.email = person.name, person.email
        record.department, record.location = person.department, person.location
        record.roles = portal_roles(person, roles_claim=roles_claim, role_map=role_map)
    db.flush()
    return added


def load_signing_key(instance_path: Path) -> RSAKey:
    """Return the demo provider's RSA signing key, made once and kept in the instance folder."""
    path = instance_path / KEY_FILE
    if not path.exists():
        _create_signing_key(path)
    try:
        key = RSAKey.import_key(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise DemoSetupError(f"{path}: not a usable RSA key ({exc}); delete it and start "
                             "again to make a new one") from None
    if not key.is_private or not key.kid:
        raise DemoSetupError(f"{path}: the key must be a private RSA key with a kid; delete "
                             "it and start again to make a new one")
    return key


def _create_signing_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": SIGNING_ALGORITHM},
                              private=True, auto_kid=True)
    # mkstemp makes the file readable by its owner only (0600). Linking it into place is
    # atomic: a process starting at the same moment either wins or reads the finished key.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".demo-idp-key-")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(key.as_dict(private=True), file)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def public_key_set(key: RSAKey) -> dict[str, Any]:
    """Return the JWKS document: the public half of the signing key."""
    return {"keys": [key.as_dict(private=False)]}


def derive_client_secret(secret_key: str) -> str:
    """Derive the demo client's secret from the portal's secret key, so none is stored."""
    digest = hmac.new(secret_key.encode(), CLIENT_SECRET_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def issue_authorization_code(code: str, *, client_id: str, person: DemoPerson,
                             redirect_uri: str, scope: str, nonce: str | None,
                             code_challenge: str, code_challenge_method: str) -> None:
    """Remember a freshly issued code (by its digest) for the token request to redeem."""
    now = utcnow()
    forget_expired(now)
    db.add(DemoAuthorizationCode(
        code_hash=_digest(code), client_id=client_id, subject=person.sub,
        redirect_uri=redirect_uri, scope=scope, nonce=nonce, code_challenge=code_challenge,
        code_challenge_method=code_challenge_method, auth_time=now, issued_at=now,
        expires_at=now + CODE_LIFETIME))
    db.flush()


def redeem_authorization_code(code: str, client_id: str) -> DemoAuthorizationCode | None:
    """Mark the code as used and return it; ``None`` if unknown, expired or used before.

    The conditional update is the lock: of two requests racing with one code, the database
    lets exactly one of them change the row. A code presented again revokes the tokens it
    bought (RFC 6749 4.1.2), committed at once because the refused request rolls back.
    """
    now = utcnow()
    code_hash = _digest(code)
    claimed = db.execute(
        update(DemoAuthorizationCode)
        .where(DemoAuthorizationCode.code_hash == code_hash,
               DemoAuthorizationCode.client_id == client_id,
               DemoAuthorizationCode.redeemed_at.is_(None),
               DemoAuthorizationCode.expires_at > now)
        .values(redeemed_at=now)
        .execution_options(synchronize_session=False))
    if claimed.rowcount == 1:
        return db.scalar(select(DemoAuthorizationCode)
                         .where(DemoAuthorizationCode.code_hash == code_hash))
    replayed = db.scalar(select(DemoAuthorizationCode.id).where(
        DemoAuthorizationCode.code_hash == code_hash,
        DemoAuthorizationCode.redeemed_at.is_not(None)))
    if replayed is not None:
        revoke_tokens_of_code(replayed)
        db.commit()
    return None


def nonce_was_used(client_id: str, nonce: str) -> bool:
    """Say whether a code was already issued to ``client_id`` with this nonce (a replay)."""
    return bool(db.scalar(select(exists().where(DemoAuthorizationCode.client_id == client_id,
                                                DemoAuthorizationCode.nonce == nonce))))


def store_access_token(access_token: str, *, client_id: str, subject: str, scope: str,
                       expires_in: int, code: DemoAuthorizationCode | None) -> None:
    """Remember an issued access token (by its digest) for the userinfo endpoint."""
    now = utcnow()
    db.add(DemoAccessToken(
        token_hash=_digest(access_token), client_id=client_id, subject=subject, scope=scope,
        issued_at=now, expires_at=now + dt.timedelta(seconds=expires_in),
        authorization_code_id=code.id if code is not None else None))
    db.flush()


def find_access_token(access_token: str) -> DemoAccessToken | None:
    """Return the stored token for a bearer token string, if there is one."""
    return db.scalar(select(DemoAccessToken)
                     .where(DemoAccessToken.token_hash == _digest(access_token)))


def revoke_tokens_of_code(code_id: int) -> int:
    """Revoke every access token bought with one authorization code."""
    result = db.execute(update(DemoAccessToken)
                        .where(DemoAccessToken.authorization_code_id == code_id,
                               DemoAccessToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow())
                        .execution_options(synchronize_session=False))
    return result.rowcount or 0


def revoke_tokens_of_person(subject: str, client_id: str) -> int:
    """Revoke a person's access tokens for one client (they signed out there)."""
    result = db.execute(update(DemoAccessToken)
                        .where(DemoAccessToken.subject == subject,
                               DemoAccessToken.client_id == client_id,
                               DemoAccessToken.revoked_at.is_(None))
                        .values(revoked_at=utcnow())
                        .execution_options(synchronize_session=False))
    db.flush()
    return result.rowcount or 0


def forget_expired(now: dt.datetime | None = None) -> None:
    """Delete codes and tokens that can no longer be used."""
    now = now or utcnow()
    db.execute(delete(DemoAccessToken).where(DemoAccessToken.expires_at <= now))
    db.execute(delete(DemoAuthorizationCode).where(DemoAuthorizationCode.expires_at <= now))
