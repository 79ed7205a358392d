"""Every model of the portal, so that Alembic and the tests see the whole schema."""

from portal.api.models import CollectionAcknowledgement, Collector, WebhookDelivery
from portal.audit.models import AuditChainHead, AuditEntry, AuditSubject
from portal.auth.demo.models import DemoAccessToken, DemoAuthorizationCode
from portal.auth.models import Person, WebSession
from portal.catalog.models import Category, CategoryNotice, NoticeVersion, Objection
from portal.consent.models import ConsentChainHead, ConsentEvent, ConsentStatus
from portal.db import Base
from portal.mail import MailMessage
from portal.requests.models import DeletionRequest, DeletionStep, KeptItem, RequestEvent
from portal.training.models import (
    SnapshotEvent,
    SnapshotHolding,
    SnapshotPart,
    TrainedModel,
    TrainedModelSnapshot,
    TrainingClient,
    TrainingSnapshot,
)
from portal.vault.models import CollectedBatch, DataKey

MODELS: tuple[type[Base], ...] = (Person, WebSession, DemoAuthorizationCode, DemoAccessToken,
                                  Category, NoticeVersion, CategoryNotice, Objection,
                                  ConsentChainHead, ConsentEvent, ConsentStatus, Collector,
                                  WebhookDelivery, DataKey, CollectedBatch,
                                  CollectionAcknowledgement, AuditChainHead, AuditEntry,
                                  AuditSubject, DeletionRequest, RequestEvent, KeptItem,
                                  DeletionStep, MailMessage, TrainingClient,
                                  TrainingSnapshot, SnapshotPart, SnapshotHolding,
                                  TrainedModel, TrainedModelSnapshot, SnapshotEvent)
