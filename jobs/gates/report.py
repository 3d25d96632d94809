"""The gate report: one screen of text for a terminal, or markdown for a pull-request comment.

Rendered from the summary's plain `gates` record, so `relay run --json` output can be turned
into the same report later.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.gates.checks import GateResult

REASON_WIDTH = 110


def record(
    name: str, version: int, promoted: bool, champion: int | None, results: list[GateResult]
) -> dict[str, Any]:
    """What the summary and the registry keep about one promotion decision.

    `champion` is the version that held the alias before this decision (None: first model).
    """
    return {
        "model_name": name,
        "model_version": version,
        "promoted": promoted,
        "champion_version": version if promoted else champion,
        "previous_champion_version": champion,
        "results": [r.as_dict() for r in results],
    }


def headline(gates: dict[str, Any]) -> str:
    failed = [r for r in gates["results"] if not r["passed"]]
    what = f"{gates['model_name']} version {gates['model_version']}"
    if not failed:
        return f"{what} promoted: all {len(gates['results'])} gates passed"
    stays = gates["champion_version"]
    kept = f"champion stays version {stays}" if stays else "there is no champion"
    return f"{what} NOT promoted: {len(failed)} of {len(gates['results'])} gates failed ({kept})"


def text(gates: dict[str, Any]) -> str:
    lines = [headline(gates)]
    for r in sorted(gates["results"], key=lambda r: r["passed"]):  # failures first
        reason = r["reason"]
        if len(reason) > REASON_WIDTH:
            reason = reason[: REASON_WIDTH - 1] + "…"
        lines.append(f"  {_status(r):4}  {r['gate']:<34} {reason}")
    return "\n".join(lines)


def markdown(gates: dict[str, Any]) -> str:
    icon = "✅" if gates["promoted"] else "❌"
    lines = [
        f"### {icon} relay: {headline(gates)}",
        "",
        "| | gate | value | threshold | reason |",
        "|---|---|---:|---:|---|",
    ]
    for r in sorted(gates["results"], key=lambda r: r["passed"]):
        mark = {"FAIL": "❌", "warn": "⚠️", "pass": "✅"}[_status(r)]
        reason = r["reason"].replace("|", "\\|")
        lines.append(
            f"| {mark} | `{r['gate']}` | {number(r['value'])} | {number(r['threshold'])} "
            f"| {reason} |"
        )
    return "\n".join(lines)


def _status(r: dict[str, Any]) -> str:
    if not r["passed"]:
        return "FAIL"
    return "warn" if r.get("warning") else "pass"


def number(value: float | None) -> str:
    """A figure as a person reads it: counts whole with thousands separators (14,540, not
    1.454e+04), other values to 4 significant digits."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"
