"""HR's consent records: filtered and reconstructed from the ledger, exported, and aggregated.

Only metadata ever leaves here: who, which category, which state, under which notice, since
when. The export formats are held to :data:`EXPORT_COLUMNS` and :data:`JSON_KEYS`, which name
no collected content; a test holds every format to them.

Exports stream: the request records the audit entry and commits before the body starts, so
the rows are read afterwards, inside the stream, on a connection of their own
(:func:`stream_partitions`), ``yield_per`` rows at a time.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import math
import operator
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Subquery,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import Engine, Row
from sqlalchemy.orm import Session

from portal.audit.models import AuditAction, AuditRole
from portal.audit.service import record
from portal.auth.models import Person, Role
from portal.catalog.models import Category, CategoryNotice, LegalBasis, NoticeVersion
from portal.consent.models import ConsentEvent, ConsentState, ConsentStatus
from portal.consent.records import NoticeTerms, consent_record, notice_terms
from portal.consent.service import category_text
from portal.db import UTCDateTime, db, get_engine, utcnow

#: Stands for "no department" / "no location" in the filter form (an empty value means "any").
NO_VALUE = "__none__"
#: States in which a collector may record: what the consent rate counts.
GIVEN_STATES = tuple(state for state in ConsentState if state.allows_collection)
STREAM_BATCH = 10_000
TREND_MONTHS = 12

#: Every column an HR export may contain (CSV header, XLSX header row), and nothing else:
#: metadata about consent, never collected content.
EXPORT_COLUMNS = ("record_id", "person", "account", "department", "location", "category",
                  "category_title", "state", "notice_version", "since")

#: Every key a JSON export may contain, at any depth (see :func:`json_record`).
JSON_KEYS = frozenset({
    # the document
    "format", "reference", "generatedAt", "generatedBy", "purpose", "filters", "asOf",
    "records",
    # the filters echoed
    "department", "location", "category", "state", "noticeVersion", "changedFrom",
    "changedTo",
    # one ISO/IEC TS 27560 consent record
    "recordId", "piiPrincipal", "id", "issuer", "name", "notice", "version", "publishedAt",
    "categorySha256", "url", "language", "legalBasis", "purposes", "dataCategories", "key",
    "sensitivity", "fields", "controller", "contact", "dpoContact", "retention", "days",
    "recipients", "withdrawal", "how", "since", "stateIri", "events", "eventId", "time",
    "method", "actorRole",
})

#: A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV Injection";
#: the full-width forms too, which some spreadsheet locales read as their ASCII twins).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value: str) -> str:
    """Make a cell text that no spreadsheet runs: prefix a formula trigger with a quote."""
    if value and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def end_of_day(day: dt.date) -> dt.datetime:
    """Return the first instant after ``day`` (UTC): "as of a date" means at its very end."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


@dataclass(frozen=True)
class RecordFilter:
    """Which consent records to show or export; ``None`` means "any".

    ``department`` and ``location`` may be ``""`` (people without one). ``as_of`` is an
    exclusive instant: the state is that of the last event *before* it.
    """

    department: str | None = None
    location: str | None = None
    category: str | None = None
    state: ConsentState | None = None
    notice_version: int | None = None
    changed_from: dt.date | None = None
    changed_to: dt.date | None = None
    as_of: dt.datetime | None = None

    def describe(self) -> dict[str, str | int | None]:
        """Return the filters in use as small facts (for the audit entry and the exports)."""
        facts: dict[str, str | int | None] = {
            "department": self.department, "location": self.location,
            "category": self.category, "state": str(self.state) if self.state else None,
            "noticeVersion": self.notice_version,
            "changedFrom": self.changed_from.isoformat() if self.changed_from else None,
            "changedTo": self.changed_to.isoformat() if self.changed_to else None,
            "asOf": (self.as_of - dt.timedelta(days=1)).date().isoformat()
            if self.as_of else None,
        }
        return {name: value for name, value in facts.items() if value is not None}


# --- the records -----------------------------------------------------------------------------

def state_source(as_of: dt.datetime | None) -> Subquery:
    """Return each person's state per category: now, or just before ``as_of``.

    Now is the derived ``consent_status`` table. At an earlier instant the state is rebuilt
    from the ledger in one query: per person and category, the last event before the instant
    (a window function, on SQLite and PostgreSQL alike).
    """
    if as_of is None:
        return (select(ConsentStatus.person_id, ConsentStatus.category_key, ConsentStatus.state,
                       ConsentStatus.notice_version_id, ConsentStatus.since,
                       ConsentEvent.receipt_id.label("record_id"))
                .join(ConsentEvent, ConsentEvent.id == ConsentStatus.event_id)
                .subquery("state_now"))
    position = func.row_number().over(
        partition_by=(ConsentEvent.person_id, ConsentEvent.category_key),
        order_by=(ConsentEvent.occurred_at.desc(), ConsentEvent.id.desc())).label("position")
    ranked = (select(ConsentEvent.person_id, ConsentEvent.category_key, ConsentEvent.state,
                     ConsentEvent.notice_version_id, ConsentEvent.occurred_at.label("since"),
                     ConsentEvent.receipt_id.label("record_id"), position)
              .where(ConsentEvent.occurred_at < as_of)
              .subquery("ranked"))
    return (select(ranked.c.person_id, ranked.c.category_key, ranked.c.state,
                   ranked.c.notice_version_id, ranked.c.since, ranked.c.record_id)
            .where(ranked.c.position == 1)
            .subquery("state_then"))


def _conditions(filters: RecordFilter, source: Subquery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.department is not None:
        conditions.append(Person.department == filters.department)
    if filters.location is not None:
        conditions.append(Person.location == filters.location)
    if filters.category is not None:
        conditions.append(source.c.category_key == filters.category)
    if filters.state is not None:
        conditions.append(source.c.state == filters.state)
    if filters.notice_version is not None:
        conditions.append(NoticeVersion.number == filters.notice_version)
    if filters.changed_from is not None:
        start = dt.datetime.combine(filters.changed_from, dt.time(), tzinfo=dt.UTC)
        conditions.append(source.c.since >= start)
    if filters.changed_to is not None:
        conditions.append(source.c.since < end_of_day(filters.changed_to))
    return conditions


def _records(filters: RecordFilter) -> tuple[Select[Any], Subquery]:
    source = state_source(filters.as_of)
    statement = (select(Person.id.label("person_id"), source.c.record_id,
                        Person.name.label("person"), Person.subject.label("account"),
                        Person.department, Person.location,
                        source.c.category_key.label("category"), source.c.state,
                        NoticeVersion.number.label("notice_version"), source.c.since)
                 .join(Person, Person.id == source.c.person_id)
                 .join(NoticeVersion, NoticeVersion.id == source.c.notice_version_id)
                 .where(*_conditions(filters, source)))
    return statement, source


def records_select(filters: RecordFilter) -> Select[Any]:
    """Return the filtered records: the person's id, then the columns of :data:`EXPORT_COLUMNS`.

    ``category_title`` is left to the caller (the notice's words, in the reader's language).
    """
    return _records(filters)[0]


def _neutralised(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Return :func:`neutralise` of a text column, done by the database (SQLite, PostgreSQL)."""
    return case((func.substr(column, 1, 1).in_(FORMULA_TRIGGERS), literal("'") + column),
                else_=column)


def _utc_text(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """Return a UTC time as ISO 8601 text with microseconds, written by the database."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    # portal.db.UTCDateTime stores "YYYY-MM-DD HH:MM:SS.ffffff" in UTC on SQLite.
    return func.replace(type_coerce(column, String), " ", "T") + "Z"


def export_select(filters: RecordFilter, titles: Mapping[str, str], dialect: str) -> Select[Any]:
    """Return the filtered records as export rows: the person's id, then :data:`EXPORT_COLUMNS`.

    Every cell is text or a number, formatted and neutralised by the database itself: in
    Python, one row would cost more than everything the database does for it.
    """
    source = state_source(filters.as_of)
    category = source.c.category_key
    title = (case({key: neutralise(text) for key, text in titles.items()}, value=category,
                  else_=category) if titles else category)
    return (select(Person.id.label("person_id"), source.c.record_id,
                   _neutralised(Person.name).label("person"),
                   _neutralised(Person.subject).label("account"),
                   _neutralised(Person.department).label("department"),
                   _neutralised(Person.location).label("location"),
                   category.label("category"), title.label("category_title"),
                   type_coerce(source.c.state, String).label("state"),
                   NoticeVersion.number.label("notice_version"),
                   _utc_text(source.c.since, dialect).label("since"))
            .join(Person, Person.id == source.c.person_id)
            .join(NoticeVersion, NoticeVersion.id == source.c.notice_version_id)
            .where(*_conditions(filters, source))
            .order_by(Person.id, category))


@dataclass(frozen=True)
class RecordPage:
    """One page of filtered records, ordered by department, name and category."""

    rows: list[Row[Any]]
    page: int
    pages: int
    total: int


def records_page(filters: RecordFilter, *, page: int = 1, per_page: int = 50) -> RecordPage:
    """Return a page of the filtered records for the screen."""
    statement = records_select(filters)
    total = count_records(filters)
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    rows = list(db.execute(statement.order_by(Person.department, Person.name, Person.id,
                                              "category")
                           .limit(per_page).offset((page - 1) * per_page)))
    return RecordPage(rows, page, pages, total)


def count_records(filters: RecordFilter) -> int:
    """Count the filtered records."""
    return db.scalar(select(func.count()).select_from(records_select(filters).subquery())) or 0


def included_people(filters: RecordFilter) -> list[int]:
    """Return the ids of everyone with at least one record in the filtered set."""
    ids = records_select(filters).subquery()
    return list(db.scalars(select(ids.c.person_id).distinct().order_by(ids.c.person_id)))


def state_counts(filters: RecordFilter) -> dict[str, int]:
    """Count the filtered records per state (DPV term)."""
    records = records_select(filters).subquery()
    rows = db.execute(select(records.c.state, func.count()).group_by(records.c.state))
    return {str(state): count for state, count in rows}


def audit_role(person: Person) -> AuditRole:
    """Return the role in which ``person`` reads consent records: HR, else the DPO."""
    return AuditRole.HR if person.has_role(Role.HR) else AuditRole.DPO


def _filter_detail(filters: RecordFilter) -> dict[str, str | int | None]:
    return {f"filter_{name}": value for name, value in filters.describe().items()}


def view_records(filters: RecordFilter, *, page: int, per_page: int, reader: Person) -> RecordPage:
    """Return a page of the filtered records for ``reader``, audited as viewed (if any show)."""
    shown = records_page(filters, page=page, per_page=per_page)
    viewed = sorted({row.person_id for row in shown.rows})
    if viewed:
        record("hr.view", action=AuditAction.READ, role=audit_role(reader), subjects=viewed,
               actor=reader, detail={"rows": len(shown.rows), "page": shown.page,
                                     **_filter_detail(filters)})
    return shown


@dataclass(frozen=True)
class FilterOptions:
    """The values the filter form offers: those that exist."""

    departments: list[str]
    locations: list[str]
    categories: list[str]
    notice_versions: list[int]


def consent_categories() -> list[str]:
    """Return the keys of the categories collected on consent, in catalog order."""
    return list(db.scalars(select(Category.key).where(Category.legal_basis == LegalBasis.CONSENT)
                           .order_by(Category.position, Category.key)))


def filter_options() -> FilterOptions:
    """Return the departments, locations, categories and notice versions that exist."""
    return FilterOptions(
        departments=list(db.scalars(select(Person.department).distinct()
                                    .order_by(Person.department))),
        locations=list(db.scalars(select(Person.location).distinct()
                                  .order_by(Person.location))),
        categories=consent_categories(),
        notice_versions=list(db.scalars(select(NoticeVersion.number)
                                        .order_by(NoticeVersion.number))))


# --- streaming the records -------------------------------------------------------------------

def stream_partitions(engine: Engine, statement: Select[Any],
                      batch: int = STREAM_BATCH) -> Iterator[Sequence[Row[Any]]]:
    """Yield the rows of ``statement`` in batches, read on a session of the stream's own.

    The request's session is closed once the response starts; this one lives as long as the
    stream. ``yield_per`` makes PostgreSQL use a server-side cursor: memory stays flat. Rows
    are read through the session's connection (Core), not as ORM results, which would add a
    loading step per row for nothing.
    """
    with Session(engine) as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            # A cursor is planned for its first 10% of rows by default (fast-start nested
            # loops); an export reads all of them, like COPY. LOCAL: for this transaction only.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        result = connection.execution_options(yield_per=batch).execute(statement)
        yield from result.partitions()


def export_rows(engine: Engine, filters: RecordFilter, people: frozenset[int],
                titles: Mapping[str, str]) -> Iterator[list[tuple[Any, ...]]]:
    """Yield the filtered records in batches of rows of :data:`EXPORT_COLUMNS`, neutralised.

    A record of someone missing from ``people`` (the audit entry's subjects) is left out:
    their consent changed into the filter between the audit and this read, and no record
    leaves unlogged.
    """
    statement = export_select(filters, titles, engine.dialect.name)
    cells = operator.itemgetter(*range(1, len(EXPORT_COLUMNS) + 1))
    for partition in stream_partitions(engine, statement):
        yield [cells(row) for row in partition if row[0] in people]


def csv_chunks(engine: Engine, filters: RecordFilter, people: frozenset[int],
               titles: Mapping[str, str]) -> Iterator[bytes]:
    """Stream the filtered records as CSV (UTF-8, every cell quoted, formulas neutralised)."""
    buffer = io.StringIO()
    # Quoting every cell is OWASP's advice: a separator or quote inside a value stays inside.
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for rows in export_rows(engine, filters, people, titles):
        writer.writerows(rows)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue().encode()


def xlsx_chunks(engine: Engine, filters: RecordFilter, people: frozenset[int],
                titles: Mapping[str, str], *, sheet_title: str) -> Iterator[bytes]:
    """Stream the filtered records as an XLSX workbook written in constant memory.

    openpyxl's write-only mode spools rows to a temporary file; the finished workbook (a ZIP,
    whose directory comes last) is then sent from that file in chunks.
    """
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    def text(value: str) -> str:
        # Control characters cannot be stored in XLSX at all; removing one may uncover a
        # formula trigger, so neutralise again.
        return neutralise(ILLEGAL_CHARACTERS_RE.sub("", value))

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=sheet_title[:31])
    sheet.append(list(EXPORT_COLUMNS))
    for rows in export_rows(engine, filters, people, titles):
        for row in rows:
            sheet.append([text(cell) if isinstance(cell, str) else cell for cell in row])
    with tempfile.TemporaryFile() as spool:
        workbook.save(spool)
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk


# --- JSON: ISO/IEC TS 27560 consent records --------------------------------------------------

def notice_facts(locale: str) -> dict[tuple[int, str], NoticeTerms]:
    """Return every notice version's terms per category (a few dozen entries), by version id."""
    categories = {category.key: category for category in db.scalars(select(Category))}
    rows = db.execute(select(CategoryNotice, NoticeVersion)
                      .join(NoticeVersion, NoticeVersion.id == CategoryNotice.notice_version_id))
    return {(version.id, part.category_key): notice_terms(
                part, version, category_text(part.content, locale),
                category=categories.get(part.category_key))
            for part, version in rows}


def history_select(filters: RecordFilter) -> Select[Any]:
    """Return every ledger event behind the filtered records, grouped by record, oldest first.

    Each row carries its record's facts as well, so one ordered pass builds the records.
    """
    statement, source = _records(filters)
    records = statement.add_columns(Person.issuer, source.c.notice_version_id).subquery("records")
    conditions = [ConsentEvent.person_id == records.c.person_id,
                  ConsentEvent.category_key == records.c.category]
    if filters.as_of is not None:
        conditions.append(ConsentEvent.occurred_at < filters.as_of)
    event_version = NoticeVersion.__table__.alias("event_version")
    return (select(records, ConsentEvent.receipt_id.label("event_id"),
                   ConsentEvent.occurred_at.label("event_time"),
                   ConsentEvent.state.label("event_state"), ConsentEvent.method,
                   ConsentEvent.actor_role, event_version.c.number.label("event_notice"))
            .join(ConsentEvent, and_(*conditions))
            .join(event_version, event_version.c.id == ConsentEvent.notice_version_id)
            .order_by(records.c.person_id, records.c.category, ConsentEvent.occurred_at,
                      ConsentEvent.id))


def json_record(rows: Sequence[Row[Any]], facts: Mapping[tuple[int, str], NoticeTerms], *,
                language: str, notice_url: Callable[[str], str]) -> dict[str, Any]:
    """Build one ISO/IEC TS 27560 consent record from its events (keys: :data:`JSON_KEYS`)."""
    first = rows[0]
    state = ConsentState(first.state)
    return {
        **consent_record(
            first.record_id, {"id": first.account, "issuer": first.issuer, "name": first.person,
                              "department": first.department, "location": first.location},
            facts.get((first.notice_version_id, first.category)), category_key=first.category,
            notice_version=first.notice_version, notice_url=notice_url(first.category),
            language=language, write_time=dt.datetime.isoformat),
        "state": str(state),
        "stateIri": state.iri,
        "since": first.since.isoformat(),
        "events": [{"eventId": row.event_id, "time": row.event_time.isoformat(),
                    "state": str(row.event_state), "stateIri": ConsentState(row.event_state).iri,
                    "noticeVersion": row.event_notice, "method": str(row.method),
                    "actorRole": str(row.actor_role)} for row in rows],
    }


def json_chunks(engine: Engine, filters: RecordFilter, people: frozenset[int],
                facts: Mapping[tuple[int, str], NoticeTerms], header: Mapping[str, Any], *,
                language: str, notice_url: Callable[[str], str]) -> Iterator[bytes]:
    """Stream a JSON document: ``header``'s facts, then ``records``, one record at a time."""
    opening = json.dumps(dict(header), ensure_ascii=False, indent=1)
    yield (opening[:-2] + ',\n "records": [').encode()
    separator = "\n  "
    rows = itertools.chain.from_iterable(stream_partitions(engine, history_select(filters)))
    # As in export_rows: nobody's record leaves unless the audit entry names them.
    audited = (row for row in rows if row.person_id in people)
    for _key, group in itertools.groupby(audited,
                                         key=lambda row: (row.person_id, row.category)):
        record = json_record(list(group), facts, language=language, notice_url=notice_url)
        yield (separator + json.dumps(record, ensure_ascii=False)).encode()
        separator = ",\n  "
    yield b"\n ]\n}\n"


# --- an export, as asked for --------------------------------------------------------------

#: The formats of an export, and what each is sent as.
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
    "pdf": "application/pdf",
}


@dataclass(frozen=True)
class ExportFacts:
    """What the audit entry of an export states, for the printed summary report."""

    reference: str
    records: int
    people: int
    generated_at: dt.datetime


@dataclass(frozen=True)
class ConsentExport:
    """An export, recorded and ready to send: the printed report's bytes, or a stream of them."""

    facts: ExportFacts
    filename: str
    media_type: str
    #: The PDF whole; the other formats as chunks, read on a connection of their own.
    body: bytes | Iterator[bytes]


def export_consent_records(filters: RecordFilter, *, chosen: str, purpose: str, reader: Person,
                           titles: Mapping[str, str], language: str,
                           notice_url: Callable[[str], str], sheet_title: str,
                           print_report: Callable[[ExportFacts], bytes]) -> ConsentExport:
    """Record the export in the audit log, then return it in the ``chosen`` format.

    The entry names everyone included and is queued before anything is read: it is saved when
    the caller commits, before the body is read, or the export fails. The rows are read as the
    body is (see :func:`stream_partitions`); someone whose consent changed into the filter
    meanwhile is left out, as the entry does not name them.

    ``titles`` word the categories, ``notice_url`` says where each category's notice is read,
    ``sheet_title`` names the spreadsheet's sheet and ``print_report`` prints the summary
    report (``pdf``): the words and addresses are the caller's.
    """
    if chosen not in MEDIA_TYPES:
        raise ValueError(f"unknown export format {chosen!r}")
    people = included_people(filters)
    facts = ExportFacts(reference=str(uuid.uuid4()), records=count_records(filters),
                        people=len(people), generated_at=utcnow())
    record("hr.export", action=AuditAction.EXPORT, role=audit_role(reader), subjects=people,
           actor=reader, purpose=purpose,
           detail={"format": chosen, "rows": facts.records, "reference": facts.reference,
                   **_filter_detail(filters)})
    filename = f"consent-records-{facts.generated_at:%Y%m%d-%H%M%S}.{chosen}"
    body: bytes | Iterator[bytes]
    if chosen == "pdf":
        body = print_report(facts)
    elif chosen == "csv":
        body = csv_chunks(get_engine(), filters, frozenset(people), titles)
    elif chosen == "xlsx":
        body = xlsx_chunks(get_engine(), filters, frozenset(people), titles,
                           sheet_title=sheet_title)
    else:
        header = {"format": "ISO/IEC TS 27560 consent records", "reference": facts.reference,
                  "generatedAt": facts.generated_at.isoformat(),
                  "generatedBy": reader.display_name, "purpose": purpose,
                  "filters": filters.describe()}
        body = json_chunks(get_engine(), filters, frozenset(people), notice_facts(language),
                           header, language=language, notice_url=notice_url)
    return ConsentExport(facts, filename, MEDIA_TYPES[chosen], body)


# --- aggregates ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Suppression:
    """Which groups of a table are hidden, and why."""

    small: frozenset[str]
    complementary: frozenset[str]
    total_hidden: bool

    @property
    def hidden(self) -> frozenset[str]:
        """Return every hidden group."""
        return self.small | self.complementary


def suppress(sizes: Mapping[str, int], min_group: int) -> Suppression:
    """Decide which groups to hide so that no group smaller than ``min_group`` shows.

    A group smaller than ``min_group`` is hidden. As the total is shown, the hidden groups
    together could be worked out by subtracting the shown ones from it (differencing); so
    further groups, smallest first, are hidden until the hidden ones together hold at least
    ``min_group`` people. The total is hidden only when it is itself too small.
    """
    small = {name for name, size in sizes.items() if 0 < size < min_group}
    hidden = set(small)
    complementary: set[str] = set()
    while hidden and sum(sizes[name] for name in hidden) < min_group:
        candidates = sorted((size, name) for name, size in sizes.items()
                            if name not in hidden and size > 0)
        if not candidates:
            break
        complementary.add(candidates[0][1])
        hidden.add(candidates[0][1])
    return Suppression(frozenset(small), frozenset(complementary),
                       0 < sum(sizes.values()) < min_group)


@dataclass(frozen=True)
class Rate:
    """How many people of a group consent to a category; ``given`` is ``None`` when hidden."""

    given: int | None
    size: int

    @property
    def percent(self) -> int | None:
        """Return the rate in whole percent (``None`` when hidden or the group is empty)."""
        if self.given is None or not self.size:
            return None
        return round(100 * self.given / self.size)


@dataclass(frozen=True)
class RateRow:
    """One department's consent rates per category."""

    department: str
    size: int
    small: bool
    hidden: bool
    rates: dict[str, Rate]


@dataclass(frozen=True)
class RateTable:
    """Consent rate per category per department at one instant, with small groups hidden."""

    categories: list[str]
    rows: list[RateRow]
    total: RateRow
    min_group: int
    complementary: list[str]


def _people_counted(instant: dt.datetime) -> ColumnElement[bool]:
    # A person counts from the moment they are known to the portal.
    return Person.created_at < instant


def department_rates(instant: dt.datetime | None, min_group: int) -> RateTable:
    """Return each department's consent rate per category at ``instant`` (default: now).

    The group is everyone of the department known to the portal at the time; a person who
    never decided counts as "not given". Filters other than the instant do not apply: rates
    over freely chosen subsets could be subtracted from one another to single people out.
    """
    moment = instant or utcnow()
    categories = consent_categories()
    sizes = dict(db.execute(select(Person.department, func.count())
                            .where(_people_counted(moment)).group_by(Person.department)).all())
    source = state_source(instant)
    given: dict[tuple[str, str], int] = {
        (department, category): count for department, category, count in db.execute(
            select(Person.department, source.c.category_key, func.count())
            .join(Person, Person.id == source.c.person_id)
            .where(source.c.state.in_(GIVEN_STATES), _people_counted(moment))
            .group_by(Person.department, source.c.category_key))}
    decision = suppress(sizes, min_group)
    rows = [RateRow(department, size, department in decision.small,
                    department in decision.hidden,
                    {key: Rate(None if department in decision.hidden
                               else given.get((department, key), 0), size)
                     for key in categories})
            for department, size in sorted(sizes.items())]
    everyone = sum(sizes.values())
    total = RateRow("", everyone, decision.total_hidden, decision.total_hidden,
                    {key: Rate(None if decision.total_hidden else
                               sum(count for (_d, category), count in given.items()
                                   if category == key), everyone)
                     for key in categories})
    return RateTable(categories, rows, total, min_group, sorted(decision.complementary))


@dataclass(frozen=True)
class TrendPoint:
    """The company-wide consent rate of one category at the end of one month."""

    month: dt.date
    rate: Rate


@dataclass(frozen=True)
class Trend:
    """Month by month, per category, the share of people consenting (small months hidden)."""

    months: list[dt.date]
    series: dict[str, list[TrendPoint]] = field(default_factory=dict)
    min_group: int = 5


def month_starts(until: dt.datetime, count: int = TREND_MONTHS) -> list[dt.date]:
    """Return the first days of the ``count`` months up to and including ``until``'s."""
    year, month = until.year, until.month
    starts = []
    for _ in range(count):
        starts.append(dt.date(year, month, 1))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return starts[::-1]


def _month_end(start: dt.date, until: dt.datetime) -> dt.datetime:
    following = (dt.date(start.year + 1, 1, 1) if start.month == 12
                 else dt.date(start.year, start.month + 1, 1))
    return min(dt.datetime.combine(following, dt.time(), tzinfo=dt.UTC), until)


def consent_trend(until: dt.datetime | None, min_group: int,
                  count: int = TREND_MONTHS) -> Trend:
    """Return each category's company-wide consent rate at the end of each month, from the ledger.

    One query: each event is valid from its time until the next event of the same person and
    category (``lead``); it counts for a month when it is valid at that month's end.
    """
    moment = until or utcnow()
    months = month_starts(moment, count)
    ends = [_month_end(start, moment) for start in months]
    month_table = union_all(*(
        select(literal(index).label("position"), literal(end, UTCDateTime).label("instant"))
        for index, end in enumerate(ends))).subquery("months")
    spans = select(
        ConsentEvent.person_id, ConsentEvent.category_key, ConsentEvent.state,
        ConsentEvent.occurred_at.label("start"),
        func.lead(ConsentEvent.occurred_at).over(
            partition_by=(ConsentEvent.person_id, ConsentEvent.category_key),
            order_by=(ConsentEvent.occurred_at, ConsentEvent.id)).label("stop"),
    ).subquery("spans")
    given = {(key, position): number for key, position, number in db.execute(
        select(spans.c.category_key, month_table.c.position, func.count())
        .join(month_table, and_(spans.c.start < month_table.c.instant,
                                or_(spans.c.stop.is_(None),
                                    spans.c.stop >= month_table.c.instant)))
        .join(Person, Person.id == spans.c.person_id)
        .where(spans.c.state.in_(GIVEN_STATES), Person.created_at < month_table.c.instant)
        .group_by(spans.c.category_key, month_table.c.position))}
    sizes = dict(db.execute(select(month_table.c.position, func.count())
                            .join(Person, Person.created_at < month_table.c.instant)
                            .group_by(month_table.c.position)).all())
    trend = Trend(months, min_group=min_group)
    for key in consent_categories():
        points = []
        for position, month in enumerate(months):
            size = sizes.get(position, 0)
            shown = size >= min_group
            points.append(TrendPoint(month, Rate(given.get((key, position), 0) if shown
                                                 else None, size)))
        trend.series[key] = points
    return trend
