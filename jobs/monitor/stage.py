"""`relay monitor`: judge what each served version answered in a window, record it in MLflow.

The window comes from the inference log (`serving.inference_log`); each version's spec, read
from the registry with its hash verified, gives the training reference the inputs drift
against and the held-out answers the answers drift against. The result is one `monitor` run
(metrics per version, the report as text and JSON, tags naming the versions) and a summary
whose `alerts` decide the exit code (9 when any check fails).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster.config import RelayConfig
from cluster.tracking.registry import aliased, load_verified, resolve
from cluster.tracking.tracker import Tracker
from jobs.metrics import plots
from jobs.monitor import feedback
from jobs.monitor.compare import compare, decide
from jobs.monitor.judge import Limits, VersionReport, drop_check, judge, refusal_check
from jobs.monitor.window import read, start_of
from serving.launch import inference_log_path


def limits(cfg: RelayConfig) -> Limits:
    """`monitor:` thresholds, each unset one taken from `gates:`."""
    m = cfg.monitor
    gate = cfg.monitor_drift
    return Limits(
        method=gate.method,
        max_drift=gate.max,
        max_prediction_drift=m.prediction_drift_max or gate.max,
        max_null_rate=cfg.gates.data.max_null_rate if m.max_null_rate is None else m.max_null_rate,
        max_latency_p99_ms=m.max_latency_p99_ms,
        max_drop_rate=m.max_drop_rate,
        min_predictions=m.min_predictions,
        max_refusal_rate=m.max_refusal_rate,
        model_min=dict(cfg.gates.model.min),
        model_max=dict(cfg.gates.model.max),
    )


def run(cfg: RelayConfig, since: str | None = None, version: int | None = None) -> dict[str, Any]:
    """The monitor summary (see `text`); records a `monitor` run."""
    span = since or cfg.monitor.since
    start = start_of(span, datetime.now(UTC))
    root = inference_log_path(cfg)
    window = read(root, cfg.model.name, start, version)
    held = limits(cfg)
    tracker = Tracker.from_config(cfg)
    client = tracker.client
    labels = feedback.outcomes(root, cfg.model.name)
    reports, specs = [], {}
    for number, table in window.versions.items():
        ref = tracker.online(lambda n=number: resolve(client, cfg.model.name, str(n)))
        specs[number], _ = tracker.online(lambda r=ref: load_verified(client, r))
        reports.append(judge(table, specs[number], held, labels, cfg))
    dropped = drop_check(window.logged, window.dropped, window.lost, held.max_drop_rate)
    alerts = [r.as_dict() for report in reports for r in report.alerts]
    if not dropped.passed:
        alerts.append(dropped.as_dict())
    answered = window.answered
    refusals = None
    if held.max_refusal_rate is not None:
        refusals = refusal_check(answered, window.refused, held.max_refusal_rate)
        if not refusals.passed:
            alerts.append(refusals.as_dict())
    summary: dict[str, Any] = {
        "model_name": cfg.model.name,
        "log": root,
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "window": span,
        "predictions_logged": window.logged,
        "dropped": window.dropped,
        "lost": window.lost,
        "drop_check": dropped.as_dict(),
        "requests_answered": answered,
        "refused": window.refused,
        "refusal_rate": sum(window.refused.values())
        / max(answered + sum(window.refused.values()), 1),
        "refusal_check": refusals.as_dict() if refusals else None,
        "versions": [r.as_dict() for r in reports],
        "features": {r.version: r.features for r in reports},
        "alerts": alerts,
        "passed": not alerts,
        "rollout": None,
    }
    two = version is None and len(window.versions) > 1  # else there is nothing to compare
    pair = tracker.online(lambda: _served_pair(cfg, client)) if two else None
    if pair and all(v in window.versions for v in pair):
        old, new = pair
        found = compare(
            cfg,
            (old, window.versions[old], specs[old]),
            (new, window.versions[new], specs[new]),
            labels,
        )
        judged = next(r for r in reports if r.version == new)
        doubts = [c for c in (dropped, refusals) if c is not None and not c.passed]
        decision, why = decide(cfg, found, judged, doubts)
        summary["rollout"] = {**found.as_dict(), "decision": decision, "reason": why}
    versions = ",".join(str(r.version) for r in reports)
    with tracker.run(f"monitor-{cfg.model.name}", stage="monitor") as run_id:
        tracker.log(
            run_id,
            params={"window": span, "log": root, "version": version or "all"},
            metrics=_metrics(summary),
            tags={
                "relay.model_name": cfg.model.name,
                "relay.model_versions": versions,
                "relay.monitor_passed": str(not alerts).lower(),
                "relay.monitor_alerts": len(alerts),
            },
        )
        tracker.log_dict(run_id, summary, "monitor_report.json")
        tracker.log_text(run_id, text(summary), "monitor_report.txt")
        with tempfile.TemporaryDirectory(prefix="relay-plots-") as folder:
            tracker.log_artifacts(run_id, _plots(reports, held, Path(folder)), "plots")
        summary["run_id"] = run_id
    for report in reports:  # the version points at its latest monitor run
        tracker.online(
            lambda v=report.version: client.set_model_version_tag(
                cfg.model.name, str(v), "relay.last_monitor_run", run_id
            )
        )
    return summary


def _served_pair(cfg: RelayConfig, client: Any) -> tuple[int, int] | None:
    """(champion, challenger) versions as the aliases say now; None without a challenger."""
    challenger = aliased(client, cfg.model.name, cfg.serve.challenger_alias)
    if challenger is None:
        return None
    return resolve(client, cfg.model.name, cfg.serve.alias).version, challenger.version


def _plots(reports: list[VersionReport], held: Limits, folder: Path) -> Path:
    """Per judged version, its inputs' drift and its answers' drift as bar charts."""
    for report in reports:
        inputs = {n: f["drift"] for n, f in report.features.items() if f["drift"] is not None}
        for name, scores, limit in (
            ("inputs", inputs, held.max_drift),
            ("answers", report.prediction_drift, held.max_prediction_drift),
        ):
            if scores:
                title = f"version {report.version}: drift of its {name} ({held.method})"
                plots.drift_bars(
                    scores, limit, held.method, title, folder / f"v{report.version}_{name}.png"
                )
    return folder


def _metrics(summary: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {
        "predictions_logged": summary["predictions_logged"],
        "dropped": summary["dropped"],
        "lost": summary["lost"],
        "refusal_rate": summary["refusal_rate"],
        "alerts": len(summary["alerts"]),
    }
    for v in summary["versions"]:
        prefix = f"v{v['version']}"
        out[f"{prefix}.predictions"] = v["predictions"]
        out[f"{prefix}.labelled"] = v["labelled"]
        out.update({f"{prefix}.live_{k}": x for k, x in v["live"].items()})
        out.update({f"{prefix}.latency_{k}_ms": x for k, x in v["latency_ms"].items()})
        for name, values in v["features"].items():
            out.update({f"{prefix}.{name}.{k}": x for k, x in values.items() if x is not None})
        out.update({f"{prefix}.answers.{k}.drift": x for k, x in v["prediction_drift"].items()})
    rollout = summary["rollout"]
    if rollout:
        for key in ("paired", "disagreement", "mean_abs_difference"):
            if rollout[key] is not None:
                out[f"rollout.{key}"] = rollout[key]
        if rollout["beat"] and rollout["beat"]["value"] is not None:
            out["rollout.live_gain"] = rollout["beat"]["value"]
    return out


def text(summary: dict[str, Any]) -> str:
    """One screen, like the gate report: a headline, then each version's checks."""
    alerts = summary["alerts"]
    head = (
        f"{summary['model_name']}: {summary['predictions_logged']} predictions logged in the "
        f"last {summary['window']}; "
        + (f"{len(alerts)} ALERT(S)" if alerts else "all checks passed")
    )
    lines = [head]
    for v in summary["versions"]:
        lat = v["latency_ms"]
        roles = ", ".join(f"{k} {n}" for k, n in sorted(v["roles"].items()))
        lines.append(
            f"version {v['version']}: {v['predictions']} predictions in {v['requests']} "
            f"requests ({roles}); latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms"
        )
        if not v["judged"]:
            lines.append("  too few predictions to judge drift and empty values")
        if v["live"]:
            shown = ", ".join(f"{k} {x:.4g}" for k, x in sorted(v["live"].items()) if k != "rows")
            lines.append(f"  live, on {v['labelled']} predictions with outcomes: {shown}")
        for r in sorted(v["results"], key=lambda r: r["passed"]):
            lines.append(f"  {'pass' if r['passed'] else 'FAIL':4}  {r['gate']:<22} {r['reason']}")
    for check in (summary["drop_check"], summary["refusal_check"]):
        if check:
            verdict = "pass" if check["passed"] else "FAIL"
            lines.append(f"  {verdict:4}  {check['gate']:<22} {check['reason']}")
    if summary["refused"] and not summary["refusal_check"]:
        statuses = ", ".join(f"{n}x{s}" for s, n in sorted(summary["refused"].items()))
        lines.append(f"  refused {sum(summary['refused'].values())} requests ({statuses})")
    rollout = summary["rollout"]
    if rollout:
        lines.append(
            f"challenger {rollout['challenger']} against champion {rollout['champion']} "
            f"({rollout['mode']}): {rollout['decision'].upper()}: {rollout['reason']}"
        )
        if rollout["disagreement"] is not None:
            lines.append(
                f"  disagree on {rollout['disagreement']:.1%} of {rollout['paired']} records"
            )
        if rollout["mean_abs_difference"] is not None:
            lines.append(
                f"  mean absolute difference {rollout['mean_abs_difference']:.4g} over "
                f"{rollout['paired']} records"
            )
    return "\n".join(lines)
