"""Every model of the portal, so that Alembic and the tests see the whole schema."""

from portal.auth.demo.models import DemoAccessToken, DemoAuthorizationCode
from portal.auth.models import Person, WebSession
from portal.db import Base

MODELS: tuple[type[Base], ...] = (Person, WebSession, DemoAuthorizationCode, DemoAccessToken)
