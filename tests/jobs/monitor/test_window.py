"""`--since`: a duration back from now or an instant; anything else is a clear error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cluster.errors import ConfigError
from jobs.monitor.window import start_of

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "start"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-12-02T09:00:00Z", datetime(2026, 12, 2, 9, tzinfo=UTC)),
        ("2026-12-02T10:00:00+01:00", datetime(2026, 12, 2, 9, tzinfo=UTC)),
        ("2026-12-02T09:00:00.250000", datetime(2026, 12, 2, 9, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_a_window_starts_a_duration_back_or_at_an_instant(since, start):
    assert start_of(since, NOW) == start


@pytest.mark.parametrize(
    ("since", "says"),
    [
        ("yesterday", "neither a duration"),
        ("30x", "neither a duration"),
        ("-5m", "neither a duration"),  # not a window that starts in the future
        ("infm", "neither a duration"),
        ("nanh", "neither a duration"),
        ("1e3m", "neither a duration"),
        ("9999999999w", "beyond the calendar"),
        ("2026-12-02T10:00:00Z", "in the future"),
    ],
)
def test_a_since_that_is_neither_names_the_forms_it_takes(since, says):
    with pytest.raises(ConfigError, match=says):
        start_of(since, NOW)
