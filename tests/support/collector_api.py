"""A small world for the collector API's tests: people, consents and collectors built through
the real services, and the header a collector authenticates with."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from portal.api.models import CollectionAcknowledgement
from portal.api.service import create_collector, revoke_collector
from portal.auth.models import Person
from portal.auth.service import sign_in
from portal.db import commit, db
from portal.vault.models import CollectedBatch, DataKey
from tests.support.factories import create_person, grant, withdraw
from tests.support.identity import ISSUER


def bearer(token: str) -> dict[str, str]:
    """Return the header that authenticates ``token``."""
    return {"Authorization": f"Bearer {token}"}


class World:
    """People, consents and collectors, made through the real services in short contexts.

    Each helper runs in its own application context and commits, as a command would, so
    that requests sent by the test client afterwards see it and never share its session.
    """

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client

    def person(self, subject: str) -> int:
        """Create (or find) the person ``subject`` as signing in would; return the id."""
        with self.app.app_context():
            person = create_person(subject, email=False)
            commit()
            return person.id

    def _person(self, subject: str) -> Person:
        found = db.scalar(select(Person).where(Person.subject == subject))
        assert found is not None
        return found

    def grant(self, subject: str, *keys: str) -> None:
        """Give the person's consent for ``keys`` under the notice in force."""
        self.person(subject)
        with self.app.app_context():
            grant(self._person(subject), *keys)
            commit()

    def withdraw(self, subject: str, *keys: str) -> None:
        """Withdraw the person's consent for ``keys``."""
        with self.app.app_context():
            withdraw(self._person(subject), *keys)
            commit()

    def object_to(self, subject: str, key: str, *, upheld: bool) -> None:
        """File the person's objection to ``key`` and have a DPO uphold or dismiss it."""
        from portal.catalog.notices import find_section
        from portal.catalog.objections import file_objection
        from portal.requests.service import decide_objection

        self.person(subject)
        with self.app.app_context():
            section = find_section(key)
            assert section is not None
            objection = file_objection(self._person(subject), section, "I object.")
            dpo = sign_in({"sub": "sub-dpo", "name": "Dpo", "groups": ["privacy-office"]},
                          issuer=ISSUER, roles_claim="groups",
                          role_map={"dpo": ["privacy-office"]})
            decide_objection(objection, dpo=dpo, upheld=upheld, reason="Decided.")
            commit()

    def collector(self, name: str = "laptop agent",
                  categories: tuple[str, ...] = ("keystrokes", "pointer", "performance"),
                  webhook_url: str = "") -> str:
        """Register a collector; return its token."""
        with self.app.app_context():
            _collector, token, _secret = create_collector(name, categories,
                                                          webhook_url=webhook_url)
            commit()
            return token

    def revoke(self, name: str) -> None:
        """Revoke the collector called ``name``."""
        with self.app.app_context():
            from portal.api.service import find_collector

            collector = find_collector(name)
            assert collector is not None
            revoke_collector(collector)
            commit()

    def stored(self) -> tuple[int, int, int]:
        """Count the stored batches, data keys and acknowledgements."""
        with self.app.app_context():
            return tuple(db.scalar(select(func.count()).select_from(model)) or 0
                         for model in (CollectedBatch, DataKey, CollectionAcknowledgement))
