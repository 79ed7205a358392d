"""Sign-in: turning verified claims into a person with roles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from portal.auth.models import Person, Role
from portal.db import db, utcnow

# Claims we copy onto the person at every sign-in, and the longest value we keep of each.
PROFILE_CLAIMS = {"name": 255, "email": 320, "department": 255, "location": 255}


class SignInRefused(Exception):
    """The provider's answer was valid but cannot sign this person in."""


def find_claim(claims: Mapping[str, Any], dotted_path: str) -> Any:
    """Return the claim at ``dotted_path`` (``realm_access.roles``), or ``None``."""
    value: Any = claims
    for part in dotted_path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def map_roles(claims: Mapping[str, Any], roles_claim: str,
              role_map: Mapping[str, list[str]]) -> list[str]:
    """Return the portal roles that the provider's groups grant, in a stable order."""
    groups = find_claim(claims, roles_claim)
    if isinstance(groups, str):
        groups = groups.replace(",", " ").split()
    if not isinstance(groups, list):
        return []
    held = {group for group in groups if isinstance(group, str)}
    return [role.value for role in Role if held & set(role_map.get(role.value, []))]


def merge_userinfo(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """Complete the ID token's claims with userinfo's, which must be about the same subject."""
    if userinfo.get("sub") != id_claims.get("sub"):
        # OIDC Core 5.3.2: a userinfo answer about someone else must not be used.
        raise SignInRefused("userinfo describes another subject than the ID token")
    merged = dict(userinfo)
    merged.update({key: value for key, value in id_claims.items() if value not in (None, "")})
    return merged


def _text_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if name == "department" and not value:
        # Some providers carry the department in the standard-ish "organization" claims.
        value = claims.get("organization") or claims.get("org")
    return str(value)[: PROFILE_CLAIMS[name]] if isinstance(value, str | int) else ""


def sign_in(claims: Mapping[str, Any], *, issuer: str, roles_claim: str,
            role_map: Mapping[str, list[str]]) -> Person:
    """Find or create the person the claims describe and refresh what the provider says."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise SignInRefused("the ID token has no usable subject")
    person = db.scalar(select(Person).where(Person.issuer == issuer, Person.subject == subject))
    if person is None:
        person = Person(issuer=issuer, subject=subject, roles=[])
        db.add(person)
    elif not person.active:
        raise SignInRefused("this account is disabled in the portal")
    for name in PROFILE_CLAIMS:
        setattr(person, name, _text_claim(claims, name))
    person.roles = map_roles(claims, roles_claim, role_map)
    zoneinfo = claims.get("zoneinfo")
    if isinstance(zoneinfo, str) and not person.timezone:
        person.timezone = zoneinfo[:64]
    person.last_sign_in_at = utcnow()
    db.flush()
    return person


def authenticated_at(claims: Mapping[str, Any]) -> dt.datetime:
    """Return when the person last authenticated at the provider (``auth_time``, else now)."""
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, int | float):
        return dt.datetime.fromtimestamp(auth_time, dt.UTC)
    return utcnow()


def disable_person(person: Person) -> None:
    """Stop a person from using the portal; their sessions die with it."""
    from portal.auth.sessions import revoke_sessions

    person.active = False
    revoke_sessions(db, person.id)
    db.flush()
