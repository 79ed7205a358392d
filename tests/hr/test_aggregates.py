"""Aggregates: consent rate per department and month, with small groups hidden (and their
complements, so that nothing can be worked out by subtraction)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.hr.service import (
    consent_trend,
    department_rates,
    end_of_day,
    month_starts,
    suppress,
)
from tests.support.hr import T0, add_people, decide


def test_a_small_group_is_hidden() -> None:
    decision = suppress({"A": 12, "B": 7, "C": 3}, 5)
    assert decision.small == {"C"}
    # C alone could be had as total - A - B: B, the next smallest, is hidden too.
    assert decision.complementary == {"B"}
    assert not decision.total_hidden


def test_complements_are_added_until_the_hidden_groups_hold_enough_people() -> None:
    decision = suppress({"A": 20, "B": 5, "C": 1, "D": 1, "E": 6}, 5)
    assert decision.small == {"C", "D"}
    assert decision.complementary == {"B"}
    assert sum({"B": 5, "C": 1, "D": 1}[name] for name in decision.hidden) >= 5


def test_no_small_group_means_nothing_hidden() -> None:
    assert suppress({"A": 5, "B": 9}, 5).hidden == frozenset()


def test_a_small_total_is_hidden_too() -> None:
    decision = suppress({"A": 2, "B": 1}, 5)
    assert decision.hidden == {"A", "B"} and decision.total_hidden


@pytest.fixture
def company(app: Flask, catalog: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Engineering: 6 people (4 consent to pointer); Design: 5 (1 consents); Sales: 2 (both)."""
    specs = ([(f"Eng{n}", "Engineering", "Berlin") for n in range(6)]
             + [(f"Des{n}", "Design", "Munich") for n in range(5)]
             + [(f"Sal{n}", "Sales", "Vienna") for n in range(2)])
    ids = add_people(app, specs)
    givers = ["Eng0", "Eng1", "Eng2", "Eng3", "Des0", "Sal0", "Sal1"]
    for index, name in enumerate(givers):
        decide(app, monkeypatch, ids[name], "pointer", "grant",
               T0 + dt.timedelta(days=index))
    # Eng3 withdraws in April: March and April differ.
    decide(app, monkeypatch, ids["Eng3"], "pointer", "withdraw", T0 + dt.timedelta(days=35))
    return ids


def test_department_rates_hide_small_departments_and_their_complement(
        app: Flask, company: dict[str, int]) -> None:
    with app.app_context():
        table = department_rates(None, 5)
    rows = {row.department: row for row in table.rows}
    assert rows["Engineering"].rates["pointer"].given == 3
    assert rows["Engineering"].rates["pointer"].percent == 50
    # Sales (2) is too small; Design (5), the next smallest, is hidden with it, so that the
    # total minus Engineering gives only the two together (7 people).
    assert rows["Sales"].small and rows["Sales"].rates["pointer"].given is None
    assert rows["Design"].hidden and not rows["Design"].small
    assert rows["Design"].rates["pointer"].given is None
    assert table.complementary == ["Design"]
    assert table.total.rates["pointer"].given == 6 and table.total.size == 13
    # What a reader can work out by subtraction covers at least five people.
    hidden = [row for row in table.rows if row.hidden]
    assert sum(row.size for row in hidden) >= 5


def test_department_rates_as_of_a_date(app: Flask, company: dict[str, int]) -> None:
    with app.app_context():
        early = department_rates(end_of_day((T0 + dt.timedelta(days=1)).date()), 5)
    rows = {row.department: row for row in early.rows}
    assert rows["Engineering"].rates["pointer"].given == 2


def test_trend_month_by_month_from_the_ledger(app: Flask, company: dict[str, int]) -> None:
    until = dt.datetime(2026, 5, 15, tzinfo=dt.UTC)
    with app.app_context():
        trend = consent_trend(until, 5, count=4)
    assert trend.months == [dt.date(2026, 2, 1), dt.date(2026, 3, 1), dt.date(2026, 4, 1),
                            dt.date(2026, 5, 1)]
    pointer = [point.rate for point in trend.series["pointer"]]
    assert [rate.given for rate in pointer] == [0, 7, 6, 6]
    assert [rate.size for rate in pointer] == [13, 13, 13, 13]
    assert trend.series["clicks"][1].rate.given == 0


def test_trend_hides_months_with_too_few_people(app: Flask, catalog: int) -> None:
    add_people(app, [("Solo", "Design", "Munich")], created_at=T0)
    with app.app_context():
        trend = consent_trend(dt.datetime(2026, 4, 15, tzinfo=dt.UTC), 5, count=3)
    assert [point.rate.given for point in trend.series["pointer"]] == [None, None, None]
    assert [point.rate.size for point in trend.series["pointer"]] == [0, 1, 1]


def test_month_starts_cross_a_year() -> None:
    assert month_starts(dt.datetime(2026, 2, 3, tzinfo=dt.UTC), 3) == [
        dt.date(2025, 12, 1), dt.date(2026, 1, 1), dt.date(2026, 2, 1)]


def test_the_page_shows_rates_hidden_groups_and_a_chart(
        app: Flask, hr: FlaskClient, company: dict[str, int]) -> None:
    html = hr.get("/hr/").get_data(as_text=True)
    assert "Consent rate per category and department" in html
    assert "fewer than 5" in html
    assert "(hidden to protect a smaller department)" in html
    assert "<svg" in html and 'role="img"' in html and "chart-bar" in html
    assert 'style="' not in html and "<script" not in html
