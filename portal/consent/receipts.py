"""Consent receipts: the portal's signing key, the receipt document, its signature and check.

A receipt is a JSON document in the Kantara Consent Receipt v1.1 shape that also carries the
ISO/IEC TS 27560 consent-record fields (under ``consentRecord``) and the ledger hashes of the
event, signed as a compact JWS (ES256). Anyone can check it with the public key published at
``/.well-known/jwks.json``; the leaf hash lets an auditor find the event in the ledger.

The private key lives in the instance folder (``receipt-signing-key.jwk``, mode 600), made
on first use like the demo's secret key. Every process of one installation must share it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from portal.auth.models import Person
from portal.catalog.models import Category, CategoryNotice
from portal.consent import chain
from portal.consent.models import ConsentEvent, ConsentMethod, ConsentState
from portal.consent.records import consent_record, notice_controller, notice_terms
from portal.consent.service import category_notice, category_text
from portal.db import db

KEY_FILE = "receipt-signing-key.jwk"
ALGORITHM = "ES256"
KANTARA_VERSION = "KI-CR-v1.1.0"
JWKS_PATH = "/.well-known/jwks.json"
_EXTENSION = "portal.receipt_key"


# --- the key ---------------------------------------------------------------------------------

def key_path(app: Flask) -> Path:
    """Return where the receipt signing key is: the configured file, else the instance's."""
    configured = app.config.get("RECEIPT_KEY_FILE")
    return Path(configured) if configured else Path(app.instance_path) / KEY_FILE


def _create_key_file(path: Path) -> None:
    """Write a new private key to ``path`` unless another process got there first."""
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": ALGORITHM}, private=True)
    document = key.as_dict(private=True)
    document["kid"] = key.thumbprint()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".receipt-key-")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream)
        # link() fails if the name exists: of two processes starting at once, one key wins
        # and both read it; a reader never sees a half-written file.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def signing_key(app: Flask | None = None) -> ECKey:
    """Return the instance's receipt signing key, creating it on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get(_EXTENSION)
    if isinstance(cached, ECKey):
        return cached
    path = key_path(app)
    if not path.exists():
        _create_key_file(path)
    key = ECKey.import_key(json.loads(path.read_text()))
    if not key.is_private:
        raise RuntimeError(f"{path} holds no private key")
    app.extensions[_EXTENSION] = key
    return key


def key_id(key: ECKey) -> str:
    """Return the key's id: its RFC 7638 thumbprint."""
    return str(key.kid or key.thumbprint())


def public_jwks(app: Flask | None = None) -> dict[str, Any]:
    """Return the JWK Set that verifies receipts (public parts only).

    It holds the current key and, after a rotation, the earlier public keys listed in
    ``RECEIPT_RETIRED_KEYS_FILE``, so receipts signed before the rotation still verify.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    key = signing_key(app)
    public = key.as_dict(private=False)
    public["kid"] = key_id(key)
    retired = app.config.get("RECEIPT_RETIRED_KEYS_FILE")
    if not retired:
        return {"keys": [public]}
    # load_keys keeps public parts only: a private key put there by mistake is not published.
    earlier = load_keys(json.loads(Path(retired).read_text()))
    return {"keys": [public, *(dict(old.as_dict(private=False), kid=old.kid)
                               for old in earlier.keys if old.kid != public["kid"])]}


# --- the document ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptFacts:
    """Everything a receipt states, gathered once for the JSON and the PDF."""

    event: ConsentEvent
    person: Person
    actor: Person | None
    category: Category
    part: CategoryNotice
    texts: Mapping[str, Any]
    language: str
    base_url: str
    #: Where the category's notice is read and consent changed (absolute URL).
    notice_url: str


def receipt_facts(event: ConsentEvent, person: Person, *, language: str, base_url: str,
                  notice_url: str) -> ReceiptFacts | None:
    """Gather what the receipt of ``person``'s ``event`` states, in ``language``.

    ``None`` when the notice version the event names has no section for its category.
    """
    part = category_notice(event.category_key, event.notice_version_id)
    if part is None:
        return None
    return ReceiptFacts(
        event=event, person=person,
        actor=db.get(Person, event.actor_id) if event.actor_id else None,
        category=part.category, part=part, texts=category_text(part.content, language),
        language=language, base_url=base_url, notice_url=notice_url)


COLLECTION_METHODS = {
    ConsentMethod.WEB: "web form on the consent portal",
    ConsentMethod.API: "consent portal API",
    ConsentMethod.IMPORT: "imported record",
    ConsentMethod.SYSTEM: "automatic change by the consent portal",
}


def build_receipt(facts: ReceiptFacts, *, issued_at: int) -> dict[str, Any]:
    """Return the receipt's claims (Kantara CR v1.1 with ISO/IEC TS 27560 record fields)."""
    event, person = facts.event, facts.person
    version = event.notice_version
    terms = notice_terms(facts.part, version, facts.texts, category=facts.category)
    controller = notice_controller(version)
    withdraw_url = facts.notice_url
    actor = {"role": str(event.actor_role)}
    if facts.actor is not None:
        actor["name"] = facts.actor.display_name
    record = consent_record(
        event.receipt_id, {"id": person.subject, "issuer": person.issuer,
                           "name": person.display_name, "email": person.email},
        terms, category_key=facts.category.key, notice_version=version.number,
        notice_url=withdraw_url, language=facts.language, write_time=chain.format_time,
        cite_document=True)
    record["event"] = {"time": chain.format_time(event.occurred_at), "actor": actor,
                       "method": str(event.method), "state": str(event.state),
                       "stateIri": event.state.iri}
    return {
        # Registered JWT claims, so that generic JOSE tools read it too.
        "iss": facts.base_url,
        "sub": person.subject,
        "iat": issued_at,
        "jti": event.receipt_id,
        # Kantara Initiative Consent Receipt Specification v1.1.
        "version": KANTARA_VERSION,
        "jurisdiction": str(controller.get("jurisdiction", "EU")),
        "consentTimestamp": int(event.occurred_at.timestamp()),
        "collectionMethod": COLLECTION_METHODS[event.method],
        "consentReceiptID": event.receipt_id,
        "publicKey": facts.base_url + JWKS_PATH,
        "language": facts.language,
        "piiPrincipalId": person.subject,
        "piiControllers": [{
            "piiController": terms.controller["name"],
            "onBehalf": False,
            "contact": terms.controller["contact"],
            "email": terms.controller["contact"],
            "address": str(controller.get("address", "")),
            "phone": str(controller.get("phone", "")),
        }],
        "policyUrl": withdraw_url,
        "services": [{
            "service": terms.title,
            "purposes": [{
                "purpose": purpose,
                "purposeCategory": ["AI model training"],
                "consentType": "EXPLICIT",
                "piiCategory": [terms.title],
                "primaryPurpose": index == 0,
                "termination": terms.how_to_withdraw,
                "thirdPartyDisclosure": False,
            } for index, purpose in enumerate(terms.purposes)],
        }],
        "sensitive": terms.sensitivity >= 3,
        "spiCat": [],
        # ISO/IEC TS 27560:2023 consent record.
        "consentRecord": record,
        # Where the event sits in the portal's hash-chained ledger.
        "ledger": {"fields": chain.canonical_fields(event.leaf_fields()),
                   "leafHash": event.leaf_hash, "chainHash": event.chain_hash},
    }


def sign_document(claims: Mapping[str, Any], app: Flask | None = None) -> str:
    """Sign a JSON document (a receipt, a certificate) as a compact JWS with the instance key."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    key = signing_key(app)
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key_id(key),
              "jku": str(app.config["BASE_URL"]) + JWKS_PATH}
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(jws.serialize_compact(header, payload.encode(), key, algorithms=[ALGORITHM]))


def sign_receipt(claims: Mapping[str, Any], app: Flask | None = None) -> str:
    """Sign receipt claims as a compact JWS with the instance key."""
    return sign_document(claims, app)


# --- checking --------------------------------------------------------------------------------

@dataclass
class ReceiptCheck:
    """The outcome of checking a receipt offline."""

    valid: bool
    reason: str
    claims: dict[str, Any] = field(default_factory=dict)
    #: What a valid document other than a consent receipt states, in one line.
    summary: str = ""

    def describe(self) -> str:
        """Say the outcome in plain words for the command line."""
        if not self.valid:
            return f"INVALID: {self.reason}"
        if self.summary:
            return f"VALID: {self.summary} ({self.reason})"
        record = self.claims["consentRecord"]
        category = record["dataCategories"][0]["key"]
        return (f"VALID: receipt {self.claims['jti']}: {record['event']['state']} for "
                f"{category}, {record['event']['time']}, notice version "
                f"{record['notice']['version']} ({self.reason})")


def load_keys(document: Mapping[str, Any]) -> KeySet:
    """Read a JWK Set or a single JWK (public parts are enough)."""
    keys = document.get("keys") if "keys" in document else [document]
    if not isinstance(keys, list) or not keys:
        raise ValueError("no keys in the key file")
    public = []
    for item in keys:
        fields = {name: value for name, value in dict(item).items() if name != "d"}
        if "kid" not in fields:
            # Receipts name their key by its thumbprint; a bare key gets the same id.
            fields["kid"] = ECKey.import_key(fields).thumbprint()
        public.append(ECKey.import_key(fields))
    return KeySet(public)


#: Checks the signed claims of one kind of document (after the signature verified); the
#: second argument names the key that signed it.
DocumentCheck = Callable[[dict[str, Any], str], ReceiptCheck]
_CHECKS = "portal.document_checks"


def register_document_check(app: Flask, kind: str, check: DocumentCheck) -> None:
    """Have ``portal receipts verify`` check documents whose ``type`` claim is ``kind``.

    For the packages that sign documents of their own with the receipt key (certificates of
    deletion), registered in their ``init_app``: consent knows receipts only.
    """
    checks: dict[str, DocumentCheck] = app.extensions.setdefault(_CHECKS, {})
    if kind in checks:
        raise ValueError(f"a check for documents of type {kind!r} is already registered")
    checks[kind] = check


def document_checks(app: Flask) -> Mapping[str, DocumentCheck]:
    """Return the checks registered on ``app`` by document type."""
    return dict(app.extensions.get(_CHECKS, {}))


def open_signed(token: str, keys: KeySet) -> ReceiptCheck:
    """Check a compact JWS's signature and read its JSON claims (valid: signature and JSON)."""
    token = token.strip()
    if token.count(".") != 2:
        return ReceiptCheck(False, "not a compact JWS (expected three dot-separated parts)")
    try:
        # Only our algorithm: a document claiming "none" or an HMAC algorithm is refused.
        signature = jws.deserialize_compact(token, keys, algorithms=[ALGORITHM])
    except JoseError as exc:
        return ReceiptCheck(False, f"the signature does not verify with the given key "
                                   f"({exc.error})")
    except ValueError as exc:
        return ReceiptCheck(False, f"the document cannot be read ({exc})")
    try:
        claims = json.loads(signature.payload)
    except ValueError:
        return ReceiptCheck(False, "the signed content is not JSON")
    if not isinstance(claims, dict):
        return ReceiptCheck(False, "the signed content is not a JSON object")
    return ReceiptCheck(True, f"signed by key {signature.headers().get('kid')}", claims)


def verify_document(token: str, keys: KeySet,
                    checks: Mapping[str, DocumentCheck] | None = None) -> ReceiptCheck:
    """Check any signed document of the portal: its ``type`` claim picks the check.

    Documents without a ``type`` claim are consent receipts.
    """
    opened = open_signed(token, keys)
    if not opened.valid:
        return opened
    kind = opened.claims.get("type")
    if kind is None:
        return _check_receipt(opened.claims, opened.reason)
    check = (checks or {}).get(str(kind))
    if check is None:
        return ReceiptCheck(False, f"unknown kind of document {kind!r}")
    return check(opened.claims, opened.reason)


def verify_receipt(token: str, keys: KeySet) -> ReceiptCheck:
    """Check a receipt's signature, its consistency and its ledger leaf hash."""
    opened = open_signed(token, keys)
    if not opened.valid:
        return opened
    return _check_receipt(opened.claims, opened.reason)


def _check_receipt(claims: dict[str, Any], signed_by: str) -> ReceiptCheck:
    try:
        record = claims["consentRecord"]
        ledger = claims["ledger"]
        ids = {claims["jti"], claims["consentReceiptID"], record["recordId"],
               ledger["fields"]["receipt_id"]}
        if len(ids) != 1:
            return ReceiptCheck(False, "the receipt's reference numbers disagree")
        if claims.get("version") != KANTARA_VERSION:
            return ReceiptCheck(False, f"unknown receipt version {claims.get('version')!r}")
        if record["event"]["state"] != ledger["fields"]["state"]:
            return ReceiptCheck(False, "the stated consent state differs from the ledger event")
        ConsentState(record["event"]["state"])
        leaf = chain.leaf_hash(ledger["fields"]).hex()
    except (KeyError, TypeError, ValueError) as exc:
        return ReceiptCheck(False, f"a required field is missing or malformed ({exc})")
    if leaf != ledger["leafHash"]:
        return ReceiptCheck(False, "the ledger leaf hash does not match the event fields")
    return ReceiptCheck(True, f"{signed_by}, ledger leaf {leaf[:16]}…", claims)
