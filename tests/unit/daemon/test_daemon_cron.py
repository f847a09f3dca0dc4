"""The epoch schedule: a tiny cron matcher (minute granularity)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from finops_fabric.daemon.runtime import cron_matches, epoch_schedule, next_epoch, parse_cron
from finops_fabric.errors import InputError
from finops_fabric.store import Store


def t(y: int, mo: int, d: int, h: int, mi: int) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=dt.UTC)


def test_every_five_minutes() -> None:
    assert cron_matches("*/5 * * * *", t(2025, 1, 6, 10, 0))
    assert cron_matches("*/5 * * * *", t(2025, 1, 6, 10, 55))
    assert not cron_matches("*/5 * * * *", t(2025, 1, 6, 10, 3))


def test_lists_ranges_and_steps() -> None:
    expr = "0,30 9-17 * * 1-5"  # on the hour and half hour, office hours, weekdays
    assert cron_matches(expr, t(2025, 1, 6, 9, 30))  # a Monday
    assert not cron_matches(expr, t(2025, 1, 6, 18, 0))
    assert not cron_matches(expr, t(2025, 1, 5, 9, 0))  # a Sunday
    assert parse_cron("10-50/20 * * * *")[0] == {10, 30, 50}
    assert parse_cron("5/20 * * * *")[0] == {5, 25, 45}


def test_sunday_is_0_or_7_and_dom_or_dow() -> None:
    assert cron_matches("0 0 * * 7", t(2025, 1, 5, 0, 0))
    assert cron_matches("0 0 * * 0", t(2025, 1, 5, 0, 0))
    # both day fields restricted: either may match (cron semantics)
    assert cron_matches("0 0 1 * 1", t(2025, 1, 6, 0, 0))  # Monday, not the 1st
    assert cron_matches("0 0 1 * 1", t(2025, 2, 1, 0, 0))  # the 1st, a Saturday
    assert not cron_matches("0 0 1 * 1", t(2025, 2, 2, 0, 0))


def test_next_epoch() -> None:
    after = dt.datetime(2025, 1, 6, 10, 1, 30, tzinfo=dt.UTC)
    assert next_epoch("*/5 * * * *", after) == t(2025, 1, 6, 10, 5)
    assert next_epoch("*/5 * * * *", t(2025, 1, 6, 10, 5)) == t(2025, 1, 6, 10, 5)
    assert next_epoch("0 3 * * *", after) == t(2025, 1, 7, 3, 0)


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *", "5-2 * * * *"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        parse_cron(bad)


def test_schedule_from_config(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert epoch_schedule(store, "production") == "*/5 * * * *"
    assert epoch_schedule(store, "test") is None
    (tmp_path / "config.json").write_text(
        json.dumps({"epochs": {"production": "0 * * * *", "staging": "*/2 * * * *"}})
    )
    assert epoch_schedule(store, "production") == "0 * * * *"
    assert epoch_schedule(store, "staging") == "*/2 * * * *"
