"""A person's own data: what is held (with a preview), and the complete download as a ZIP.

Everything here reads the data of the person given and of no one else: every query is keyed
by that person's id, and collected content comes only through the vault's reads of one's own
batches. Colleagues who appear in a person's records (private conversations) are replaced by
pseudonyms made for this requester alone, and the text they wrote is withheld (GDPR Art. 15(4):
the right to a copy must not adversely affect the rights and freedoms of others).

The download is built while it is sent (:func:`build_download`), one file after another, in
memory bounded by a few batches whatever the person holds; ``manifest.json`` comes last, since
only then are the hashes of the other files known.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import hmac
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, g, render_template, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from sqlalchemy import select

# zipstream-ng: writes a ZIP as it is iterated (ZIP64 for entries of unknown size), queueing
# nothing but the names of entries already written; pure Python with no dependencies, kept
# up to date (see pyproject.toml).
from zipstream import ZIP_DEFLATED, ZipStream

from portal.audit.models import AuditAction, AuditEntry, AuditRole
from portal.audit.service import detail_of, entries_concerning, record
from portal.audit.wording import ROLES, describe_entry
from portal.auth.models import Person
from portal.catalog.document import FALLBACK_LANGUAGE
from portal.catalog.models import CategoryNotice, NoticeVersion
from portal.catalog.notices import current_notice
from portal.consent import chain, receipts
from portal.consent.models import ConsentEvent
from portal.consent.service import category_text
from portal.consent.wording import method_label, state_label
from portal.db import EXTENSION, db, utcnow
from portal.exports.sections import DownloadSection
from portal.pdf import render_pdf
from portal.vault import crypto
from portal.vault.checks import parse_timestamp
from portal.vault.keys import configured_master_key
from portal.vault.reading import DecryptedBatch, HeldSummary, held_summary, stream_own_batches

#: Bumped when a file of the download changes shape; written into manifest.json.
FORMAT_VERSION = 1
PREVIEW_EVENTS = 10
#: Long texts (AI prompts, up to 50,000 characters) are cut in the preview, never in the download.
PREVIEW_TEXT_LENGTH = 300
#: zlib level 6 (zlib's default): JSON and CSV shrink five- to tenfold; higher levels cost
#: much more time for a few percent.
COMPRESS_LEVEL = 6
#: Bytes gathered before handing a piece of the ZIP to the server: fewer, larger writes.
CHUNK_BYTES = 64 * 1024
#: Fields of someone else's message that say that it exists, not what it says; every other
#: field of it is withheld.
OTHERS_METADATA = frozenset({"t", "channel_id", "message_id", "author", "participants"})
#: The value of the "withheld" field added to a colleague's message in the download.
WITHHELD_REASON = ("written by another person: the text is withheld to protect their rights "
                   "(GDPR Art. 15(4))")
#: HKDF label of the key that makes colleagues' pseudonyms; changing it renames everyone.
PSEUDONYM_INFO = b"consent-portal/exports/colleague-pseudonyms/v1"
PSEUDONYM_PREFIX = "colleague-"


# --- colleagues in one's records -------------------------------------------------------------

class Pseudonyms:
    """Stable names for the colleagues in one requester's records.

    ``colleague-`` and 12 hex digits of HMAC-SHA256 over (requester id, collector pseudonym),
    keyed by a key derived from the master key with HKDF: the same colleague has the same name
    in every download of the same requester, but two requesters get different names for
    them, so that they cannot put their downloads together to follow one colleague. (A
    rotation of the master key renames them.)
    """

    def __init__(self, requester_id: int, master: crypto.MasterKey) -> None:
        self._requester_id = requester_id
        self._key = HKDF(algorithm=SHA256(), length=32, salt=None,
                         info=PSEUDONYM_INFO).derive(master.raw)
        self.name = functools.lru_cache(maxsize=4096)(self._name)

    def _name(self, original: str) -> str:
        message = json.dumps([self._requester_id, original], separators=(",", ":"))
        digest = hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:12]


def pseudonyms_for(person: Person) -> Pseudonyms:
    """Return the pseudonyms of the colleagues in ``person``'s records."""
    return Pseudonyms(person.id, configured_master_key())


def involves_others(schema: Mapping[str, Any]) -> bool:
    """Say whether a category's events name their author (so some are by other people)."""
    return "author" in schema.get("properties", {})


def protect_others(event: dict[str, Any], pseudonyms: Pseudonyms) -> dict[str, Any]:
    """Return ``event`` with colleagues pseudonymised and what they wrote withheld.

    The person's own messages (author ``self``) keep their text; participants are always
    renamed. A colleague's message keeps only the facts that it exists (time, conversation,
    author, participants); every other field becomes null, and ``withheld`` says why.
    """
    result = dict(event)
    participants = event.get("participants")
    if isinstance(participants, list):
        result["participants"] = [pseudonyms.name(str(item)) for item in participants]
    author = event.get("author")
    if author == "self":
        return result
    result["author"] = pseudonyms.name(str(author))
    for name in event:
        if name not in OTHERS_METADATA:
            result[name] = None
    result["withheld"] = WITHHELD_REASON
    return result


# --- what is held, with a preview ------------------------------------------------------------

@dataclass(frozen=True)
class Level:
    """A DSS level as the notice explains it, and how many events were collected at it."""

    level: int
    name: str
    meaning: str
    events: int


@dataclass(frozen=True)
class PreviewCell:
    """One value of the preview, readable; ``withheld`` marks a colleague's withheld text."""

    text: str
    withheld: bool = False
    exact: str = ""


@dataclass(frozen=True)
class HeldCategory:
    """One category of what is held about the person, for the "My data" page."""

    key: str
    title: str
    summary: str
    held: HeldSummary
    levels: list[Level]
    fields: list[tuple[str, str]]
    preview: list[list[PreviewCell]] = field(default_factory=list)
    involves_others: bool = False


def latest_section(key: str) -> CategoryNotice | None:
    """Return the category's part of the notice in force, else of the latest version naming it.

    A category left out of a later notice may still have data held until it is purged.
    """
    return db.scalar(select(CategoryNotice).join(CategoryNotice.notice_version)
                     .where(CategoryNotice.category_key == key)
                     .order_by(NoticeVersion.number.desc()).limit(1))


def _level_texts(notice: NoticeVersion | None, language: str) -> dict[int, tuple[str, str]]:
    levels = (notice.document.get("sensitivity_levels", {}) if notice else {}) or {}
    texts = {}
    for number, by_language in levels.items():
        chosen = by_language.get(language) or by_language.get(FALLBACK_LANGUAGE) or {}
        texts[int(number)] = (str(chosen.get("name", "")), str(chosen.get("meaning", "")))
    return texts


def _schema_of(section: CategoryNotice | None) -> dict[str, Any]:
    schema = section.content.get("event_schema", {}) if section else {}
    return schema if isinstance(schema, dict) else {}


def _titles(section: CategoryNotice | None, key: str,
            language: str) -> tuple[str, str, dict[str, Any]]:
    texts = category_text(section.content, language) if section else {}
    return str(texts.get("title") or key), str(texts.get("summary", "")), texts


def held_overview(person: Person, language: str) -> list[HeldCategory]:
    """Summarise what is held about ``person`` per category (metadata only), in notice order."""
    summaries = held_summary(person.id)
    levels = _level_texts(current_notice(), language)
    overview = []
    for key, held in summaries.items():
        section = latest_section(key)
        title, summary, texts = _titles(section, key, language)
        meanings = texts.get("fields", {}) if isinstance(texts.get("fields"), dict) else {}
        schema = _schema_of(section)
        overview.append(HeldCategory(
            key=key, title=title, summary=summary, held=held,
            levels=[Level(level, *levels.get(level, (str(level), "")), events)
                    for level, events in sorted(held.dss_levels.items())],
            fields=[(name, str(meanings.get(name, ""))) for name in schema.get("properties", {})],
            involves_others=involves_others(schema)))
    positions = {section.category_key: section.position
                 for section in (current_notice().sections if current_notice() else [])}
    overview.sort(key=lambda item: (positions.get(item.key, len(positions)), item.key))
    return overview


def _event_time(event: Mapping[str, Any]) -> dt.datetime | None:
    moment = event.get("t")
    return parse_timestamp(moment) if isinstance(moment, str) else None


def latest_events(person: Person, key: str, count: int = PREVIEW_EVENTS) -> list[dict[str, Any]]:
    """Decrypt and return the person's ``count`` latest events of a category, newest first.

    Batches are read newest window first and reading stops as soon as no older batch can hold
    an event later than those already found.
    """
    found: list[tuple[dt.datetime, int, dict[str, Any]]] = []
    order = 0
    for batch in stream_own_batches(person, key, newest_first=True, rows_per_fetch=4):
        if len(found) >= count and batch.collected_to < found[count - 1][0]:
            break
        for event in batch.events:
            moment = _event_time(event) or batch.collected_to
            order += 1
            # The order number keeps the sort stable and never compares two events.
            found.append((moment, -order, event))
        found.sort(key=lambda item: (item[0], item[1]), reverse=True)
        del found[count:]
    return [event for _moment, _order, event in found]


def _readable(value: Any, is_time: bool) -> PreviewCell:
    if value is None:
        return PreviewCell("")
    if is_time and isinstance(value, str):
        moment = parse_timestamp(value)
        if moment is not None:
            return PreviewCell(format_datetime(moment, "medium"), exact=value)
    if isinstance(value, bool):
        return PreviewCell(_("yes") if value else _("no"))
    if isinstance(value, list):
        text = ", ".join(str(item) for item in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    else:
        text = str(value)
    if len(text) > PREVIEW_TEXT_LENGTH:
        # i18n: end of a long text cut short in the preview; the download has it in full
        text = text[:PREVIEW_TEXT_LENGTH].rstrip() + " " + _("… (shortened here)")
    return PreviewCell(text)


def preview(person: Person, category: HeldCategory, schema: Mapping[str, Any],
            pseudonyms: Pseudonyms) -> list[list[PreviewCell]]:
    """Return the latest events of a category as rows of readable cells, in field order."""
    properties = schema.get("properties", {})
    rows = []
    for event in latest_events(person, category.key):
        shown = protect_others(event, pseudonyms) if category.involves_others else event
        row = []
        for name, _meaning in category.fields:
            if shown.get("withheld") and name not in OTHERS_METADATA:
                # i18n: shown instead of a colleague's message text on "My data"
                row.append(PreviewCell(_("Withheld: written by a colleague"), withheld=True))
                continue
            row.append(_readable(shown.get(name),
                                 properties.get(name, {}).get("format") == "date-time"))
        rows.append(row)
    return rows


def view_my_data(person: Person, language: str) -> list[HeldCategory]:
    """Return what is held about ``person`` per category, each with its latest events.

    Audited as the person's own view before anything is read: if the entry cannot be written,
    nothing is shown.
    """
    record("my_data.view", action=AuditAction.READ, role=AuditRole.SUBJECT,
           subjects=person.id, actor=person)
    pseudonyms = pseudonyms_for(person)
    result = []
    for category in held_overview(person, language):
        schema = _schema_of(latest_section(category.key))
        rows = preview(person, category, schema, pseudonyms)
        result.append(HeldCategory(**{**category.__dict__, "preview": rows}))
    return result


def category_choices(person: Person, language: str) -> list[tuple[str, str]]:
    """Return (key, title) of every category the person may choose in the download form.

    The catalog in force, and any category no longer in it that still holds their data.
    """
    notice = current_notice()
    keys = [section.category_key for section in notice.sections] if notice else []
    keys += sorted(key for key in held_summary(person.id) if key not in keys)
    return [(key, _titles(latest_section(key), key, language)[0]) for key in keys]


# --- the download ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DownloadChoice:
    """What the person asked to download: categories and an optional period (UTC, inclusive)."""

    categories: tuple[str, ...]
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    #: The period as the person chose it, in their words (for the manifest and summary).
    from_date: str = ""
    to_date: str = ""

    def includes(self, moment: dt.datetime | None) -> bool:
        """Say whether an event at ``moment`` lies in the chosen period."""
        if moment is None:
            # Events without a readable time cannot be placed; only an open period holds them.
            return self.since is None and self.until is None
        return ((self.since is None or moment >= self.since)
                and (self.until is None or moment <= self.until))


@dataclass
class WrittenFile:
    """A file of the ZIP once written: its size and SHA-256, for the manifest."""

    path: str
    size: int = 0
    sha256: str = ""


@dataclass
class CategoryCount:
    """What the download holds of one category, counted while it is written."""

    key: str
    title: str
    events: int = 0
    batches: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    dss_levels: dict[int, int] = field(default_factory=dict)
    withheld: int = 0
    columns: list[str] = field(default_factory=list)
    involves_others: bool = False

    def add(self, batch: DecryptedBatch, moments: Sequence[dt.datetime | None],
            withheld: int) -> None:
        """Count one batch's events that lie in the period."""
        self.events += len(moments)
        self.batches += 1
        self.withheld += withheld
        self.dss_levels[batch.dss_level] = self.dss_levels.get(batch.dss_level, 0) + len(moments)
        known = [moment for moment in moments if moment is not None]
        if known:
            self.first = min([*known, *([self.first] if self.first else [])])
            self.last = max([*known, *([self.last] if self.last else [])])


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False).encode("utf-8") + b"\n"


def _utc(moment: dt.datetime | None) -> str | None:
    return chain.format_time(moment) if moment is not None else None


#: Characters that make a spreadsheet treat a cell as a formula (OWASP "CSV injection"), and
#: their full-width forms, which some spreadsheet locales read as the ASCII ones (as HR's).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_value(value: Any) -> str | int | float:
    """Return a CSV cell a spreadsheet shows as written (download sections use it too)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    # A leading apostrophe keeps a spreadsheet from running the text as a formula; the
    # JSON Lines file holds the exact value.
    return "'" + text if text.startswith(_FORMULA_START) else text


class DownloadBuilder:
    """Write one person's download as a stream of ZIP bytes (see :func:`build_download`)."""

    def __init__(self, person: Person, choice: DownloadChoice, language: str,
                 sections: Sequence[DownloadSection], generated_at: dt.datetime) -> None:
        self.person = person
        self.choice = choice
        self.language = language
        self.sections = sections
        self.generated_at = generated_at
        self.files: list[WrittenFile] = []
        self.counts: list[CategoryCount] = []
        self.zip = ZipStream(compress_type=ZIP_DEFLATED, compress_level=COMPRESS_LEVEL)
        self.pseudonyms = pseudonyms_for(person)
        self.consent_events = 0
        self.access_entries = 0
        self.section_files: dict[str, list[str]] = {}

    # Each file passes through here: hashed and measured as it is compressed and sent.
    def _tracked(self, path: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        written = WrittenFile(path)
        digest = hashlib.sha256()
        for chunk in chunks:
            if chunk:
                digest.update(chunk)
                written.size += len(chunk)
                yield chunk
        written.sha256 = digest.hexdigest()
        self.files.append(written)

    def _emit(self, path: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        self.zip.add(self._tracked(path, chunks), path)
        yield from self.zip.all_files()

    def stream(self) -> Iterator[bytes]:
        """Yield the ZIP: collected data, consent, access log, sections, summary, manifest."""
        for key in self.choice.categories:
            section = latest_section(key)
            schema = _schema_of(section)
            count = CategoryCount(key, _titles(section, key, self.language)[0],
                                  involves_others=involves_others(schema))
            count.columns = [*schema.get("properties", {}), "dss_level", "batch_id",
                             *(["withheld"] if count.involves_others else [])]
            self.counts.append(count)
            yield from self._emit(f"collected/{key}.jsonl", self._jsonl(count))
            yield from self._emit(f"collected/{key}.csv", self._csv(count))
        yield from self._emit("consent/history.json", [self._consent_history()])
        yield from self._receipts()
        yield from self._emit("access-log.json", [self._access_log()])
        for section in self.sections:
            yield from self._section(section)
        context = self._summary_context()
        yield from self._emit("summary.html", [render_template(
            "pdf/my_data_summary.html", **context).encode("utf-8")])
        yield from self._emit("summary.pdf", [render_pdf("pdf/my_data_summary.html", **context)])
        # Last: only now are the other files' hashes known. It does not list itself.
        self.zip.add(self._manifest(), "manifest.json")
        yield from self.zip.all_files()
        yield from self.zip.footer()

    # --- collected data ----------------------------------------------------------------------

    def _events(self, count: CategoryCount,
                counting: bool) -> Iterator[tuple[DecryptedBatch, list[dict[str, Any]]]]:
        """Yield each batch with its events in the period, colleagues protected."""
        for batch in stream_own_batches(self.person, count.key, since=self.choice.since,
                                        until=self.choice.until):
            moments, events = [], []
            for event in batch.events:
                moment = _event_time(event)
                if not self.choice.includes(moment):
                    continue
                if count.involves_others:
                    event = protect_others(event, self.pseudonyms)
                moments.append(moment)
                events.append(event)
            if not events:
                continue
            if counting:
                count.add(batch, moments, sum(1 for event in events if "withheld" in event))
            yield batch, events

    def _jsonl(self, count: CategoryCount) -> Iterator[bytes]:
        for batch, events in self._events(count, counting=True):
            head = {"batch_id": batch.public_id, "dss_level": batch.dss_level}
            yield b"".join(orjson.dumps({**head, "event": event}) + b"\n" for event in events)

    def _csv(self, count: CategoryCount) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        # Column names come from the catalog's schema: neutralised like any cell.
        writer.writerow([csv_value(name) for name in count.columns])
        fields = count.columns[:-3 if count.involves_others else -2]
        for batch, events in self._events(count, counting=False):
            for event in events:
                extra = [batch.dss_level, batch.public_id]
                if count.involves_others:
                    extra.append(event.get("withheld", ""))
                writer.writerow([csv_value(event.get(name)) for name in fields] + extra)
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue().encode("utf-8")

    # --- consent, access log, sections -------------------------------------------------------

    def _own_consent_events(self) -> Iterator[ConsentEvent]:
        yield from db.scalars(select(ConsentEvent).where(ConsentEvent.person_id == self.person.id)
                              .order_by(ConsentEvent.id))

    def _consent_history(self) -> bytes:
        events = []
        for event in self._own_consent_events():
            events.append({
                "receipt_id": event.receipt_id, "time": chain.format_time(event.occurred_at),
                "category": event.category_key, "state": str(event.state),
                "state_iri": event.state.iri, "state_label": state_label(event.state),
                "notice_version": event.notice_version.number,
                "method": str(event.method), "actor_role": str(event.actor_role),
                "how": method_label(event.method, event.actor_role),
                "ledger_position": event.id, "leaf_hash": event.leaf_hash,
                "chain_hash": event.chain_hash,
                "receipt_file": f"consent/receipts/{event.receipt_id}.jws"})
        self.consent_events = len(events)
        return _json_bytes({"person": self.person.subject, "events": events})

    def _receipts(self) -> Iterator[bytes]:
        base_url = str(current_app.config["BASE_URL"])
        issued_at = int(self.generated_at.timestamp())
        for event in self._own_consent_events():
            facts = receipts.receipt_facts(
                event, self.person, language=self.language, base_url=base_url,
                notice_url=base_url + url_for("catalog.show", key=event.category_key))
            if facts is None:
                continue
            token = receipts.sign_receipt(receipts.build_receipt(facts, issued_at=issued_at))
            yield from self._emit(f"consent/receipts/{event.receipt_id}.jws",
                                  [(token + "\n").encode("ascii")])

    def _access_log(self) -> bytes:
        entries = [self._access_entry(entry) for entry in entries_concerning(self.person.id)]
        self.access_entries = len(entries)
        return _json_bytes({"person": self.person.subject, "entries": entries})

    def _access_entry(self, entry: AuditEntry) -> dict[str, Any]:
        return {
            "reference": entry.reference, "time": chain.format_time(entry.occurred_at),
            "by_you": entry.actor_id == self.person.id, "who": entry.actor_name,
            "role": str(entry.actor_role), "role_label": str(ROLES[entry.actor_role]),
            "action": str(entry.action), "what": entry.what,
            "what_label": describe_entry(entry, self.person.id, self.language),
            "purpose": entry.purpose,
            "detail": detail_of(entry), "people_concerned": entry.subject_count}

    def _section(self, section: DownloadSection) -> Iterator[bytes]:
        names = self.section_files.setdefault(section.key, [])
        for name, data in section.files(self.person):
            path = f"{section.key}/{name.lstrip('/')}"
            names.append(path)
            yield from self._emit(path, [data])

    # --- summary and manifest ----------------------------------------------------------------

    def _local(self, moment: dt.datetime | None) -> str:
        return format_datetime(moment, "medium") if moment is not None else ""

    def _summary_context(self) -> dict[str, Any]:
        levels = _level_texts(current_notice(), self.language)
        categories = [{
            "key": count.key, "title": count.title, "events": count.events,
            "batches": count.batches, "first": self._local(count.first),
            "last": self._local(count.last), "involves_others": count.involves_others,
            "withheld": count.withheld, "columns": count.columns,
            "levels": [{"level": level, "name": levels.get(level, (str(level), ""))[0],
                        "meaning": levels.get(level, ("", ""))[1], "events": events}
                       for level, events in sorted(count.dss_levels.items())],
        } for count in self.counts]
        return {
            "person_name": self.person.display_name, "person_subject": self.person.subject,
            "person_email": self.person.email,
            "generated_local": format_datetime(self.generated_at, "full"),
            "generated_utc": self.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "from_date": self.choice.from_date, "to_date": self.choice.to_date,
            "categories": categories,
            "others": any(count.involves_others for count in self.counts),
            "consent_events": self.consent_events, "access_entries": self.access_entries,
            "sections": [{"key": section.key, "title": str(section.title),
                          "explanation": str(section.explanation),
                          "files": self.section_files.get(section.key, []),
                          "facts": section.summary(self.person) if section.summary else []}
                         for section in self.sections],
            "format_version": FORMAT_VERSION,
            "jwks_url": str(current_app.config["BASE_URL"]) + receipts.JWKS_PATH,
            "portal_url": str(current_app.config["BASE_URL"]),
        }

    def _manifest(self) -> bytes:
        return _json_bytes({
            "format_version": FORMAT_VERSION,
            "generated_at": chain.format_time(self.generated_at),
            "person": {"subject": self.person.subject, "issuer": self.person.issuer,
                       "name": self.person.display_name},
            "filters": {"categories": list(self.choice.categories),
                        "from": self.choice.from_date or None,
                        "to": self.choice.to_date or None,
                        "from_utc": _utc(self.choice.since), "until_utc": _utc(self.choice.until)},
            "categories": [{
                "key": count.key, "title": count.title, "events": count.events,
                "batches": count.batches, "first_event": _utc(count.first),
                "last_event": _utc(count.last),
                "events_per_dss_level": {str(level): events
                                         for level, events in sorted(count.dss_levels.items())},
                "colleague_messages_withheld": count.withheld,
                "files": [f"collected/{count.key}.jsonl", f"collected/{count.key}.csv"],
            } for count in self.counts],
            "counts": {"events": sum(count.events for count in self.counts),
                       "consent_events": self.consent_events,
                       "receipts": sum(1 for item in self.files
                                       if item.path.startswith("consent/receipts/")),
                       "access_log_entries": self.access_entries},
            "files": [{"path": item.path, "bytes": item.size, "sha256": item.sha256}
                      for item in self.files],
            "note": "manifest.json is written last, once the hashes of the other files are "
                    "known, and does not list itself.",
        })


def coalesce(chunks: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Join small pieces into writes of about ``size`` bytes (ZIP headers are tiny)."""
    pending: list[bytes] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


def build_download(person: Person, choice: DownloadChoice, *, language: str,
                   sections: Sequence[DownloadSection],
                   generated_at: dt.datetime) -> Iterator[bytes]:
    """Yield ``person``'s download as ZIP bytes, built while it is read.

    Reads through :data:`portal.db.db`: the caller binds it to a unit of work that lives as
    long as the stream (see :func:`stream_download`).
    """
    yield from coalesce(DownloadBuilder(person, choice, language, sections,
                                        generated_at).stream())


def stream_download(person: Person, choice: DownloadChoice, *, language: str,
                    sections: Sequence[DownloadSection],
                    generated_at: dt.datetime) -> Iterator[bytes]:
    """Yield the download as :func:`build_download` does, in a unit of work of its own.

    The request's unit of work committed (with the audit entry) and closed before the first
    byte; this one lives as long as the stream and only reads, on PostgreSQL from one
    snapshot, so that both files of a category and the manifest agree even while new batches
    arrive. It is :data:`portal.db.db` while the stream is read (in the application context
    the caller keeps, e.g. with Flask's ``stream_with_context``).
    """
    session = current_app.extensions[EXTENSION]()
    g.db_session = session
    try:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ",
                                                  "postgresql_readonly": True})
        yield from build_download(person, choice, language=language, sections=sections,
                                  generated_at=generated_at)
    finally:
        g.pop("db_session", None)
        session.close()


@dataclass(frozen=True)
class Download:
    """A download, recorded and ready to send: the ZIP's name and its bytes, built as read."""

    filename: str
    chunks: Iterator[bytes]


def download(person: Person, choice: DownloadChoice, *, language: str,
             sections: Sequence[DownloadSection]) -> Download:
    """Record ``person``'s download of their own data, then return it (see :func:`stream_download`).

    The audit entry is written when the caller commits, before the first byte is read: if it
    cannot be written, nothing is sent.
    """
    record("my_data.download", action=AuditAction.DOWNLOAD, role=AuditRole.SUBJECT,
           subjects=person.id, actor=person,
           detail={"categories": ",".join(choice.categories),
                   "from": choice.from_date or None, "to": choice.to_date or None})
    generated_at = utcnow()
    return Download(download_filename(generated_at),
                    stream_download(person, choice, language=language, sections=sections,
                                    generated_at=generated_at))


def download_filename(moment: dt.datetime) -> str:
    """Return the name the server gives the ZIP: ``my-data-YYYYMMDD-HHMM.zip`` (UTC)."""
    return moment.astimezone(dt.UTC).strftime("my-data-%Y%m%d-%H%M.zip")

