"""Fixtures of the data-subject request tests: mail through a real SMTP server, and the people
of a deletion request."""

from __future__ import annotations

from typing import Any

import pytest

from portal.db import commit
from tests.support.config import portal_settings
from tests.support.deletion import Cast, collect
from tests.support.factories import create_person
from tests.support.identity import DPO_GROUPS, ISSUER
from tests.support.smtp import Inbox


@pytest.fixture
def settings(database_url: str, smtp: tuple[Inbox, int]) -> dict[str, Any]:
    """A real database, mail through the test SMTP server, no identity provider."""
    values = portal_settings(database_url, ISSUER, "http://localhost")
    values.update(SMTP_HOST="127.0.0.1", SMTP_PORT=smtp[1], SMTP_SECURITY="none",
                  DPO_TEAM_EMAIL="privacy-team@example.com")
    return values


@pytest.fixture
def cast(ctx: None) -> Cast:
    """Alex (an employee with data), Dana and Dora (data protection officers)."""
    people = Cast(create_person("alex"), create_person("dana", groups=DPO_GROUPS),
                  create_person("dora", groups=DPO_GROUPS))
    collect(people.alex)
    commit()
    return people
