"""The gate report: failures first, with values and thresholds."""

from __future__ import annotations

from jobs.gates import checks
from jobs.gates import report as gatereport


def test_reports_put_failures_first_with_values_and_thresholds():
    results = [
        checks.reject_rate(0.01, 0.05),
        checks.drift({"income": 0.9}, "psi", 0.2),
        checks.schema_change([{"name": "a"}], [{"name": "b"}], "warn"),
    ]
    record = gatereport.record("m", 3, False, 1, results)
    assert record["champion_version"] == 1 and record["previous_champion_version"] == 1
    text = gatereport.text(record)
    lines = text.splitlines()
    assert lines[0] == "m version 3 NOT promoted: 1 of 3 gates failed (champion stays version 1)"
    assert lines[1].split()[:2] == ["FAIL", "data.drift.psi"] and "income 0.900" in lines[1]
    assert len(lines) == 4
    md = gatereport.markdown(record)
    assert md.startswith("### ❌ relay: m version 3 NOT promoted")
    assert "| ❌ | `data.drift.psi` | 0.9 | 0.2 |" in md and "⚠️" in md
    promoted = gatereport.record("m", 4, True, 3, results[:1])
    assert promoted["champion_version"] == 4
    assert gatereport.headline(promoted) == "m version 4 promoted: all 1 gates passed"
