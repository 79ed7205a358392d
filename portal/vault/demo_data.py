"""Plausible collected events for the demo, valid against the shipped catalog's event schemas.

Each demo person gets a persona (a job, screens, colleagues' pseudonyms, documents they open)
drawn from a seeded generator, and each category a stream of batches on working days. The
same seed always gives the same batches, so the demo and its tests are reproducible.
Everything is invented: no real person, document or conversation is behind any of it.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]
WORKDAY_START = dt.time(9, 0)
WORKDAY_MINUTES = 8 * 60 + 30
CLASSIFIER = "dss-classifier 3.2"
#: Written for corrections in keystroke runs: the character erased, then this mark.
BACKSPACE = "\u232b"


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def stamp(moment: dt.datetime) -> str:
    """Write a UTC time as the collectors do: RFC 3339, milliseconds, ``Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- the person ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Document:
    """A document the person works on, with the DSS level the classifier gives it."""

    document_id: str
    dss_level: int


@dataclass(frozen=True)
class Channel:
    """A chat the person is in, with the other people in it."""

    channel_id: str
    participants: tuple[str, ...]


@dataclass(frozen=True)
class Persona:
    """Who the invented person is, as far as the collectors could tell."""

    job: str
    screens: tuple[tuple[int, int], ...]
    colleagues: tuple[str, ...]
    manager: str
    documents: tuple[Document, ...]
    channels: tuple[Channel, ...]
    project: str


PROJECTS = ("billing migration", "customer portal redesign", "on-call rotation",
            "data warehouse cleanup", "invoice reconciliation", "mobile release 4.2")


def make_persona(person_seed: int | str, colleagues: tuple[str, ...] = ()) -> Persona:
    """Return the persona of a demo person (the same seed, the same persona).

    ``colleagues``: the workplace pseudonyms of the people the person works with (the other
    demo people, as the collector learns them from the consent API); by default eight
    invented ones, who are nobody the portal knows.
    """
    rng = random.Random(f"persona:{person_seed}")
    job = rng.choice(("engineer", "engineer", "analyst", "writer"))
    screens = ((1920, 1080),) if rng.random() < 0.4 else ((2560, 1440), (1920, 1080))
    invented = tuple(f"p-{_hex(rng, 12)}" for _ in range(8))
    colleagues = tuple(sorted(colleagues))[:8] or invented
    documents = tuple(Document(f"doc-{_hex(rng, 12)}",
                               rng.choices((1, 2, 3, 4), weights=(25, 45, 22, 8))[0])
                      for _ in range(14))
    channels = []
    for _ in range(4):
        size = min(rng.randint(1, 5), len(colleagues))
        channels.append(Channel(f"c-{_hex(rng, 12)}", tuple(rng.sample(colleagues, size))))
    return Persona(job=job, screens=screens, colleagues=colleagues, manager=colleagues[0],
                   documents=documents, channels=tuple(channels), project=rng.choice(PROJECTS))


# --- pointer ---------------------------------------------------------------------------------

APPS_BY_JOB = {
    "engineer": ("Visual Studio Code", "Terminal", "Firefox", "Slack", "Outlook"),
    "analyst": ("Excel", "Firefox", "Power BI Desktop", "Outlook", "Slack"),
    "writer": ("Word", "Firefox", "Outlook", "Slack", "PowerPoint"),
}


SAMPLES_PER_SECOND = 30
#: A pointer batch stops growing here: a demo needs shape, not volume.
MAX_POINTER_EVENTS = 600


def _pointer(rng: random.Random, persona: Persona, start: dt.datetime,
             end: dt.datetime) -> list[Event]:
    """Return pointer paths: eased Bézier curves between targets, sampled at 30 Hz."""
    events: list[Event] = []
    screen = 1
    width, height = persona.screens[0]
    x, y = width // 2, height // 2
    now = start
    app = rng.choice(APPS_BY_JOB[persona.job])
    while True:
        if rng.random() < 0.15:
            app = rng.choice(APPS_BY_JOB[persona.job])
        if len(persona.screens) > 1 and rng.random() < 0.1:
            screen = rng.randint(1, len(persona.screens))
            width, height = persona.screens[screen - 1]
            x, y = min(x, width - 1), min(y, height - 1)
        target_x, target_y = rng.randint(20, width - 20), rng.randint(20, height - 20)
        distance = math.hypot(target_x - x, target_y - y)
        # Fitts-like: longer moves take longer, and nobody is perfectly regular.
        duration = 0.18 + 0.12 * math.log2(1 + distance / 40) + rng.uniform(0, 0.15)
        # One control point pushed sideways bends the path as a wrist does.
        bend = rng.uniform(-0.25, 0.25) * distance
        nx, ny = (-(target_y - y) / distance, (target_x - x) / distance) if distance else (0, 0)
        cx, cy = (x + target_x) / 2 + nx * bend, (y + target_y) / 2 + ny * bend
        steps = max(2, int(duration * SAMPLES_PER_SECOND))
        for step in range(1, steps + 1):
            moment = now + dt.timedelta(seconds=duration * step / steps)
            if moment > end:
                return events or [_pointer_event(start, x, y, screen, app)]
            linear = step / steps
            eased = linear * linear * (3 - 2 * linear)
            px = (1 - eased) ** 2 * x + 2 * (1 - eased) * eased * cx + eased ** 2 * target_x
            py = (1 - eased) ** 2 * y + 2 * (1 - eased) * eased * cy + eased ** 2 * target_y
            events.append(_pointer_event(moment, px + rng.uniform(-0.8, 0.8),
                                         py + rng.uniform(-0.8, 0.8), screen, app,
                                         width, height))
        x, y = target_x, target_y
        # Reading, typing or thinking between moves: the pointer rests and nothing is recorded.
        now += dt.timedelta(seconds=duration + rng.expovariate(1 / 4.0))
        if now > end or len(events) > MAX_POINTER_EVENTS:
            return events


def _pointer_event(moment: dt.datetime, x: float, y: float, screen: int, app: str,
                   width: int = 32767, height: int = 32767) -> Event:
    return {"t": stamp(moment), "x": max(0, min(width - 1, round(x))),
            "y": max(0, min(height - 1, round(y))), "screen": screen, "app": app}


# --- clicks ----------------------------------------------------------------------------------

CLICK_TARGETS: dict[str, tuple[tuple[str, str], ...]] = {
    "Visual Studio Code": (("button", "Run tests"), ("tab", "invoice_totals.py"),
                           ("tab", "test_invoice_totals.py"), ("menuitem", "Go to Definition"),
                           ("button", "Commit"), ("listitem", "billing/rounding.py"),
                           ("textbox", "Search"), ("menuitem", "Format Document"),
                           ("button", "Sync Changes"), ("checkbox", "Match Case")),
    "Terminal": (("tab", "zsh — billing"), ("menuitem", "Copy"), ("menuitem", "Paste"),
                 ("tab", "ssh staging-db-2")),
    "Firefox": (("link", "PAY-1432 Invoice totals off by one cent"), ("button", "Create issue"),
                ("combobox", "Status"), ("menuitem", "In Review"), ("tab", "Pull request #812"),
                ("button", "Approve"), ("link", "Runbook: nightly export"),
                ("link", "Release calendar Q2"), ("textbox", "Search Confluence")),
    "Slack": (("listitem", "#team-billing"), ("listitem", "#incident-nightly-export"),
              ("textbox", "Message #team-billing"), ("button", "Send"),
              ("button", "Add reaction"), ("listitem", "Threads")),
    "Outlook": (("listitem", "Re: Release review moved to Thursday"), ("button", "Reply"),
                ("button", "Send"), ("checkbox", "Flag"), ("button", "Accept"),
                ("listitem", "Invoice run April: sign-off needed"), ("tab", "Calendar")),
    "Excel": (("tab", "Q2 forecast"), ("tab", "EMEA"), ("textbox", "Formula bar"),
              ("menuitem", "Insert PivotTable"), ("button", "Sort A to Z"),
              ("combobox", "Number format"), ("menuitem", "Freeze Top Row")),
    "Power BI Desktop": (("button", "Refresh"), ("tab", "Revenue by region"),
                         ("checkbox", "Show totals"), ("combobox", "Quarter")),
    "Word": (("button", "Track Changes"), ("menuitem", "Accept All Changes"),
             ("tab", "Review"), ("button", "Comment"), ("combobox", "Heading 2"),
             ("textbox", "Find")),
    "PowerPoint": (("listitem", "Slide 4"), ("button", "New Slide"),
                   ("menuitem", "Duplicate Slide"), ("tab", "Design"),
                   ("radio", "Widescreen (16:9)")),
}


def _clicks(rng: random.Random, persona: Persona, start: dt.datetime,
            end: dt.datetime) -> list[Event]:
    """Return a click stream: the same control is clicked in about the same place each time."""
    width, height = persona.screens[0]
    events: list[Event] = []
    now = start + dt.timedelta(seconds=rng.uniform(0, 20))
    app = rng.choice(APPS_BY_JOB[persona.job])
    while now <= end:
        if rng.random() < 0.2:
            app = rng.choice(APPS_BY_JOB[persona.job])
        role, label = rng.choice(CLICK_TARGETS[app])
        spot = random.Random(f"{app}/{label}")
        x = spot.randint(40, width - 40) + rng.randint(-6, 6)
        y = spot.randint(30, height - 30) + rng.randint(-4, 4)
        button = rng.choices(("left", "right", "middle"), weights=(90, 8, 2))[0]
        if role == "link" and button == "right":
            role, label = "other", "Open link in new tab"
        events.append({"t": stamp(now), "button": button, "x": x, "y": y, "app": app,
                       "target_role": role, "target_label": label})
        now += dt.timedelta(seconds=rng.expovariate(1 / 9.0) + 0.25)
    return events or [{"t": stamp(start), "button": "left", "x": width // 2, "y": height // 2,
                       "app": app, "target_role": "other", "target_label": ""}]


# --- keystrokes ------------------------------------------------------------------------------

TYPED: dict[str, tuple[str, ...]] = {
    "code editor": (
        "def invoice_total(lines):\n    return sum(line.amount for line in lines)",
        "from decimal import Decimal, ROUND_HALF_EVEN",
        "    total = total.quantize(Decimal(\"0.01\"), rounding=ROUND_HALF_EVEN)",
        "def test_rounding_matches_ledger():\n    assert invoice_total([Line(\"0.105\")]) == "
        "Decimal(\"0.10\")",
        "if not rows:\n    raise ValueError(\"no rows to export\")",
        "logger.info(\"exported %d invoices in %.1fs\", count, elapsed)",
        "SELECT customer_id, sum(amount) FROM invoice_line GROUP BY customer_id;",
        "const retry = (fn, attempts = 3) => fn().catch(e => attempts ? retry(fn, attempts - 1)"
        " : Promise.reject(e));",
        "# keep until the old export job is switched off",
    ),
    "terminal": (
        "git status", "git checkout -b fix/invoice-rounding",
        "pytest -q tests/billing -k rounding",
        "git commit -am \"Round invoice totals half-even like the ledger\"",
        "git push -u origin HEAD",
        "docker compose up -d db", "kubectl -n billing get pods", "df -h /var/lib/export",
        "tail -f /var/log/export/nightly.log", "make lint",
    ),
    "word processor": (
        "The nightly export failed on 27 February because the disk was full.",
        "Next steps: alert at 80% disk use and move old exports to cold storage.",
        "Goal for H1: lead the redesign of the on-call rotation.",
        "Attendees: platform team, billing, customer support.",
        "We propose to switch the rounding rule to half-even so invoices match the ledger.",
        "Risks: customers who reconcile by hand will see one-cent differences for one month.",
    ),
    "spreadsheet": (
        "=SUMIFS(C:C,A:A,\"EMEA\")", "=ROUND(B4*1.19,2)", "Q2 forecast", "=AVERAGE(D2:D31)",
        "Churn (monthly)", "=IFERROR(E7/E6-1,\"\")", "1250", "Owner",
    ),
    "presentation editor": (
        "Billing migration: where we are", "Three things we learned from the export incident",
        "Timeline: pilot in May, all customers by September", "Questions?",
        "Cost per invoice down 14% since January",
    ),
}
APPS_FOR_TYPING = {
    "engineer": ("code editor", "code editor", "terminal", "word processor"),
    "analyst": ("spreadsheet", "spreadsheet", "word processor", "presentation editor"),
    "writer": ("word processor", "word processor", "presentation editor", "spreadsheet"),
}


def _with_corrections(rng: random.Random, text: str) -> str:
    """Put in the typos people make and erase (the run records corrections too)."""
    typed = []
    for character in text:
        if character.isalpha() and rng.random() < 0.02:
            typed.append(rng.choice("asdfghjkl") + BACKSPACE)
        typed.append(character)
    return "".join(typed)


def _keystrokes(rng: random.Random, persona: Persona, start: dt.datetime,
                end: dt.datetime) -> list[Event]:
    """Return runs of typing in the listed apps, each with how long it took."""
    events: list[Event] = []
    now = start
    while now <= end:
        app = rng.choice(APPS_FOR_TYPING[persona.job])
        keys = _with_corrections(rng, rng.choice(TYPED[app]))[:2000]
        duration = int(sum(max(60.0, rng.gauss(190, 45)) for _ in keys))
        events.append({"t": stamp(now), "app": app, "keys": keys,
                       "duration_ms": min(duration, 600_000)})
        now += dt.timedelta(milliseconds=duration) + dt.timedelta(
            seconds=rng.expovariate(1 / 45.0))
    return events


# --- AI transcripts --------------------------------------------------------------------------

@dataclass(frozen=True)
class Exchange:
    """A prompt, the assistant's answer, and the follow-ups a person might send."""

    tool: str
    prompt: str
    response: str
    follow_ups: tuple[tuple[str, str], ...] = ()


EXCHANGES = (
    Exchange("internal assistant",
             "Summarise the attached incident report in three bullet points for Monday's "
             "operations meeting.\n\nIncident 2026-02-27: the nightly export job stopped at "
             "02:14 when /var/lib/export reached 100% disk use. Invoices for 312 customers "
             "went out one day late. No data was lost. The on-call engineer freed space at "
             "07:40 and re-ran the job.",
             "- The nightly export stopped on 27 February because its disk was full.\n"
             "- Invoices for 312 customers were one day late; no data was lost.\n"
             "- Next step: alert at 80% disk use (owner: platform team, due 9 March).",
             (("Make it shorter, one sentence.",
               "The nightly export failed on 27 February because its disk was full, "
               "delaying 312 invoices by a day without data loss; an 80% disk alert is "
               "due by 9 March."),)),
    Exchange("code assistant",
             "Why does this return 0.11 instead of 0.10?\n\nround(Decimal('0.105'), 2)",
             "Python's round() on a Decimal uses the context's rounding, which is "
             "ROUND_HALF_EVEN, so 0.105 should give 0.10 — unless the value was created from "
             "a float. Decimal(0.105) is really 0.10500000000000000444…, which rounds up. "
             "Create it from the string '0.105' or quantize explicitly:\n\n"
             "Decimal('0.105').quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN)",
             (("Write a pytest test for that.",
               "def test_half_even():\n    value = Decimal('0.105').quantize(Decimal('0.01'),"
               " rounding=ROUND_HALF_EVEN)\n    assert value == Decimal('0.10')"),)),
    Exchange("internal assistant",
             "Draft a short, friendly email to a customer explaining that their April "
             "invoice will arrive two days late because of a system migration. No jargon.",
             "Subject: Your April invoice will arrive on 3 May\n\nDear customer,\n\nwe are "
             "moving our billing to a new system this week. Because of this, your April "
             "invoice will reach you two days later than usual, on 3 May. The amount and "
             "your payment date do not change.\n\nWe are sorry for the wait. If you have any "
             "questions, just reply to this email.\n\nKind regards,\nBilling team"),
    Exchange("code assistant",
             "Write a SQL query that lists customers whose invoice total in March differs "
             "from the ledger by more than one cent. Tables: invoice(customer_id, month, "
             "total), ledger(customer_id, month, amount).",
             "SELECT i.customer_id, i.total, l.amount, i.total - l.amount AS difference\n"
             "FROM invoice AS i\nJOIN ledger AS l USING (customer_id, month)\n"
             "WHERE i.month = '2026-03' AND abs(i.total - l.amount) > 0.01\n"
             "ORDER BY abs(i.total - l.amount) DESC;"),
    Exchange("internal assistant",
             "Make an agenda for a 30-minute release review of mobile release 4.2 with QA, "
             "product and support.",
             "1. Scope and what changed since 4.1 (5 min, product)\n2. Test results and open "
             "defects (10 min, QA)\n3. Support readiness: known issues, help-centre articles "
             "(5 min, support)\n4. Go/no-go and rollout plan (5 min, all)\n5. Actions and "
             "owners (5 min)",
             (("Add a line for the accessibility check.",
               "Added after item 2: \"Accessibility check: screen reader and contrast "
               "results (5 min, QA)\"; item 5 shortened to 2 minutes."),)),
    Exchange("internal assistant",
             "Translate into German for the works council: \"Collection of keystrokes stays "
             "off unless each employee switches it on.\"",
             "„Die Erfassung von Tastatureingaben bleibt ausgeschaltet, solange die einzelnen "
             "Beschäftigten sie nicht selbst einschalten.“"),
    Exchange("code assistant",
             "Give me a regular expression for our invoice numbers: INV-, four digits of "
             "year, dash, six digits.",
             "^INV-\\d{4}-\\d{6}$\n\nIf the year must be 20xx: ^INV-20\\d{2}-\\d{6}$"),
    Exchange("internal assistant",
             "Help me rewrite this self-assessment paragraph so it sounds less defensive: "
             "\"The migration was late but that was not my fault, the requirements changed "
             "twice.\"",
             "\"The migration finished three weeks after plan. The requirements changed "
             "twice during the project; next time I will agree a change process with the "
             "stakeholders at the start, so that changes come with a new date.\""),
    Exchange("code assistant",
             "Explain this error: psycopg.errors.LockNotAvailable: could not obtain lock on "
             "row in relation \"invoice\"",
             "Another transaction holds a lock on that invoice row and your statement was "
             "told not to wait (NOWAIT, or lock_timeout ran out). Either retry after a short "
             "pause, let the statement wait, or find the long transaction in "
             "pg_stat_activity that keeps the lock."),
)


def _ai_transcripts(rng: random.Random, persona: Persona, start: dt.datetime,
                    end: dt.datetime) -> list[Event]:
    """Return conversations with the company's AI tools: a question and its follow-ups."""
    events: list[Event] = []
    now = start + dt.timedelta(seconds=rng.uniform(0, 120))
    while now <= end:
        exchange = rng.choice(EXCHANGES)
        conversation = f"conv_{_hex(rng, 12)}"
        turns = ((exchange.prompt, exchange.response), *exchange.follow_ups)
        for prompt, response in turns:
            if now > end:
                break
            events.append({"t": stamp(now), "tool": exchange.tool, "prompt": prompt,
                           "response": response, "conversation_id": conversation})
            now += dt.timedelta(seconds=rng.uniform(40, 240))
        now += dt.timedelta(minutes=rng.expovariate(1 / 12.0))
    return events or [{"t": stamp(start), "tool": EXCHANGES[0].tool,
                       "prompt": EXCHANGES[0].prompt, "response": EXCHANGES[0].response,
                       "conversation_id": f"conv_{_hex(rng, 12)}"}]


# --- conversations ---------------------------------------------------------------------------

THREADS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("self", "Can we move the release review to Thursday at 14:00? Friday is a public "
      "holiday here."),
     ("other", "Thursday works for me."),
     ("other", "Same, I'll update the invite."),
     ("self", "Thanks!")),
    (("other", "Export job failed again, disk at 100% on export-2."),
     ("self", "On it. Freeing old archives now."),
     ("self", "Back to 61%. Re-running the job."),
     ("other", "Invoices are going out, thanks for jumping on it so early.")),
    (("self", "Could someone review PR #812? It's the half-even rounding change."),
     ("other", "Looking now. Do we need a migration for old invoices?"),
     ("self", "No, only new runs use it. Old ones stay as issued."),
     ("other", "Approved.")),
    (("other", "Lunch at the Thai place at 12:30?"),
     ("self", "Yes please, I need a break from spreadsheets."),
     ("other", "Booked for four.")),
    (("self", "My daughter has a fever, I'll work from home tomorrow and skip the "
      "stand-up."),
     ("other", "No problem, get well soon to her. I'll take your slot in the demo."),
     ("self", "Thank you, I owe you one.")),
    (("other", "Heads-up: the works council asked about the new activity recording."),
     ("self", "I saw the notice. I've left keystrokes off for now, not sure about it."),
     ("other", "Fair. It says declining has no consequences, and I'd hold them to that.")),
    (("self", "Who is on call this weekend? The rota page is empty."),
     ("other", "Me on Saturday, Lena on Sunday. I'll fix the page."),
     ("self", "Great, thanks.")),
)


def _conversations(rng: random.Random, persona: Persona, start: dt.datetime,
                   end: dt.datetime) -> list[Event]:
    """Return chat threads in the person's channels, colleagues named only by pseudonym."""
    events: list[Event] = []
    now = start + dt.timedelta(seconds=rng.uniform(0, 60))
    while now <= end:
        channel = rng.choice(persona.channels)
        for speaker, text in rng.choice(THREADS):
            if now > end:
                break
            author = "self" if speaker == "self" else rng.choice(channel.participants)
            events.append({"t": stamp(now), "channel_id": channel.channel_id,
                           "message_id": f"m-{_hex(rng, 16)}", "author": author,
                           "participants": list(channel.participants), "text": text})
            now += dt.timedelta(seconds=rng.uniform(15, 300))
        now += dt.timedelta(minutes=rng.expovariate(1 / 20.0))
    if not events:
        channel = persona.channels[0]
        events.append({"t": stamp(start), "channel_id": channel.channel_id,
                       "message_id": f"m-{_hex(rng, 16)}", "author": "self",
                       "participants": list(channel.participants), "text": THREADS[0][0][1]})
    return events


# --- performance reviews ---------------------------------------------------------------------

REVIEW_SENTENCES = {
    "exceeds": ("Led the {project} from plan to production two weeks early.",
                "Colleagues across three teams name them as the person who unblocks things.",
                "Mentored two new team members, both now working independently."),
    "meets": ("Delivered the {project} milestones agreed for the period.",
              "Reliable on call; incidents were handled calmly and documented well.",
              "Mentored one new team member."),
    "partially_meets": ("The {project} slipped by six weeks; the causes were partly outside "
                        "their control.",
                        "Documentation of decisions needs to improve.",
                        "Agreed support: a weekly check-in with their manager."),
    "does_not_meet": ("Most goals for the {project} were not reached.",
                      "We agreed a development plan with clear goals and monthly reviews."),
}
GOALS = ("Goal for next period: lead the redesign of the on-call rotation.",
         "Goal for next period: present the rounding change to the finance team.",
         "Goal for next period: reduce manual invoice corrections by half.")


def review_period(signed_off: dt.datetime) -> str:
    """Name the half-year a review signed off at ``signed_off`` is about (the last one ended)."""
    if signed_off.month <= 6:
        return f"{signed_off.year - 1}-H2"
    return f"{signed_off.year}-H1"


def _performance(rng: random.Random, persona: Persona, start: dt.datetime,
                 end: dt.datetime) -> list[Event]:
    """Return one finished performance review, signed off within the window."""
    signed_off = start + (end - start) * rng.uniform(0.2, 0.9)
    rating = rng.choices(("exceeds", "meets", "partially_meets", "does_not_meet"),
                         weights=(20, 55, 20, 5))[0]
    sentences = [sentence.format(project=persona.project)
                 for sentence in REVIEW_SENTENCES[rating]]
    summary = " ".join([*sentences, rng.choice(GOALS)])
    return [{"t": stamp(signed_off), "review_period": review_period(signed_off),
             "rating": rating, "reviewer_id": persona.manager, "summary": summary}]


# --- sensitivity ratings ---------------------------------------------------------------------

def _sensitivity_ratings(rng: random.Random, persona: Persona, start: dt.datetime,
                         end: dt.datetime) -> list[Event]:
    """Return the DSS labels of documents opened: each document keeps its level."""
    events: list[Event] = []
    now = start + dt.timedelta(seconds=rng.uniform(0, 300))
    while now <= end:
        document = rng.choice(persona.documents)
        events.append({"t": stamp(now), "document_id": document.document_id,
                       "dss_level": document.dss_level, "classifier": CLASSIFIER})
        now += dt.timedelta(minutes=rng.expovariate(1 / 9.0))
    if not events:
        document = persona.documents[0]
        events.append({"t": stamp(start), "document_id": document.document_id,
                       "dss_level": document.dss_level, "classifier": CLASSIFIER})
    return events


# --- batches ---------------------------------------------------------------------------------

Generator = Callable[[random.Random, Persona, dt.datetime, dt.datetime], list[Event]]


@dataclass(frozen=True)
class CategoryPlan:
    """How a category's batches look: its generator and how long one batch's window is."""

    generate: Generator
    minutes: tuple[int, int]


PLANS: dict[str, CategoryPlan] = {
    "pointer": CategoryPlan(_pointer, (2, 5)),
    "clicks": CategoryPlan(_clicks, (20, 60)),
    "keystrokes": CategoryPlan(_keystrokes, (15, 45)),
    "ai_transcripts": CategoryPlan(_ai_transcripts, (20, 90)),
    "conversations": CategoryPlan(_conversations, (30, 120)),
    "performance": CategoryPlan(_performance, (5, 30)),
    "sensitivity_ratings": CategoryPlan(_sensitivity_ratings, (60, 240)),
}
#: How often work happens at each DSS level, for batches not labelled by their content.
DSS_WEIGHTS = (25, 45, 22, 8)


def working_days(end: dt.date, days: int) -> list[dt.date]:
    """Return the last ``days`` weekdays before ``end``, oldest first."""
    found: list[dt.date] = []
    day = end
    while len(found) < days:
        day -= dt.timedelta(days=1)
        if day.weekday() < 5:
            found.append(day)
    return found[::-1]


def _dss_level(category_key: str, rng: random.Random, events: list[Event]) -> int:
    if category_key == "sensitivity_ratings":
        return max(int(event["dss_level"]) for event in events)
    if category_key == "performance":
        return 4
    return rng.choices((1, 2, 3, 4), weights=DSS_WEIGHTS)[0]


def generate_batches(category_key: str, *, person_seed: int | str, days: int,
                     batches_per_day: int, end: dt.date | None = None,
                     colleagues: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Return a demo person's batches of one category, shaped as the collector API takes them.

    Each is ``{"category", "collected_from", "collected_to", "dss_level", "events"}`` (without
    the subject, which the caller adds). Batches fall on the last ``days`` weekdays before
    ``end`` (default: today, UTC), ``batches_per_day`` of them spread over the working day;
    performance reviews are rare, so that category gets a single batch with one review.
    The same arguments always give the same batches. ``colleagues``: see :func:`make_persona`.

    :raise KeyError: the category is not one the demo knows.
    """
    plan = PLANS[category_key]
    persona = make_persona(person_seed, colleagues)
    rng = random.Random(f"batches:{person_seed}:{category_key}")
    end = end or dt.datetime.now(dt.UTC).date()
    dates = working_days(end, days)
    if category_key == "performance":
        dates, batches_per_day = dates[-1:], min(batches_per_day, 1)
    slot = WORKDAY_MINUTES / max(1, batches_per_day)
    batches = []
    for day in dates:
        opening = dt.datetime.combine(day, WORKDAY_START, tzinfo=dt.UTC)
        for number in range(batches_per_day):
            length = min(rng.uniform(*plan.minutes), slot * 0.9)
            offset = number * slot + rng.uniform(0, slot - length)
            start = (opening + dt.timedelta(minutes=offset)).replace(microsecond=0)
            finish = start + dt.timedelta(minutes=length)
            events = plan.generate(rng, persona, start, finish)
            batches.append({"category": category_key, "collected_from": stamp(start),
                            "collected_to": stamp(finish),
                            "dss_level": _dss_level(category_key, rng, events),
                            "events": events})
    return batches
