"""The undeclared-PII scan on hand-built values (no Ray needed)."""

from __future__ import annotations

import pyarrow as pa

from jobs.etl.pii import luhn, scan


def test_scan_finds_emails_phones_and_valid_cards_only() -> None:
    table = pa.table(
        {
            "free": [
                "mail me: a.b@example.com",
                "+44 20 7946 0958",
                "4111 1111 1111 1111",
                "4111 1111 1111 1112",
                "C0000000123",
                "12",
                None,
                "north",
            ],
        }
    )
    assert scan(table, ["free"]) == {"free:email": 1, "free:phone": 1, "free:card": 1}
    assert luhn("4111111111111111") and not luhn("4111111111111112")


def test_clean_columns_report_nothing() -> None:
    table = pa.table({"region": ["north", "south"], "n": [1, 2]})
    assert scan(table, ["region", "n"]) == {}
