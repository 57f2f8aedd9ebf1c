"""Turn the stages' reports into Markdown tables: the CI job summary (`make summary`).

Reads whatever this job produced or received: reports/junit/*.xml (pytest), the data
validation result, the evaluation against its gates, the challenge of a retraining, load
tests and deploy records.
A report that is missing is left out; one that cannot be read says so in the summary.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from .config import Paths
from .evaluation_report import EvaluationReport

MAX_FAILURES = 20


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _verdict(passed: bool) -> str:
    return "pass" if passed else "**FAIL**"


def _number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def junit(folder: Path) -> list[str]:
    """One row per JUnit file: tests, failures, errors, skipped, seconds; then the failures."""
    rows, failed = [], []
    for path in sorted(folder.glob("*.xml")):
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
        seconds = 0.0
        for suite in suites:
            for key in totals:
                totals[key] += int(suite.get(key, 0))
            seconds += float(suite.get("time", 0))
            for case in suite.iter("testcase"):
                problem = case.find("failure")
                problem = problem if problem is not None else case.find("error")
                if problem is not None:
                    name = f"{case.get('classname', '')}::{case.get('name', '')}"
                    failed.append([path.stem, name, (problem.get("message") or "")[:200]])
        passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
        rows.append([path.stem, passed, totals["failures"], totals["errors"], totals["skipped"]])
        rows[-1].append(f"{seconds:.1f}")
    if not rows:
        return []
    lines = ["### Tests", ""]
    lines += _table(["layer", "passed", "failed", "errors", "skipped", "seconds"], rows)
    if failed:
        lines += _table(["layer", "test", "message"], failed[:MAX_FAILURES])
    return lines


def validation(path: Path) -> list[str]:
    outcome = json.loads(path.read_text(encoding="utf-8"))
    stats = outcome.get("statistics", {})
    lines = [
        f"### Data validation: {_verdict(outcome.get('success', False))}",
        "",
        f"{stats.get('successful_expectations', '?')}/{stats.get('evaluated_expectations', '?')}"
        " expectations met.",
        "",
    ]
    failing = [check for check in outcome.get("results", []) if not check.get("success")]
    if failing:
        rows = [
            [c.get("column") or "(table)", c.get("expectation"), c.get("observed")] for c in failing
        ]
        lines += _table(["column", "expectation", "observed"], rows[:MAX_FAILURES])
    return lines


def evaluation(path: Path) -> list[str]:
    report = EvaluationReport.read(path)
    lines = [
        f"### Model evaluation (model version {report.model_version}): " + _verdict(report.passed),
        "",
    ]
    baseline = report.baseline.metrics
    production = (report.production.metrics if report.production else None) or {}
    rows = [
        [name, _number(value), _number(baseline.get(name, "")), _number(production.get(name, ""))]
        for name, value in report.metrics.items()
    ]
    lines += _table(["metric", "model", "baseline", "production"], rows)
    gates = [
        [g.name, g.metric, _number(g.measured), _number(g.bound)]
        + [_verdict(g.passed) + (" (advisory)" if g.advisory else "")]
        for g in report.gates
    ]
    lines += _table(["gate", "metric", "measured", "bound", "result"], gates)
    return lines


def loadtests(folder: Path) -> list[str]:
    rows = []
    for path in sorted(folder.glob("*/result.json")):
        r = json.loads(path.read_text(encoding="utf-8"))
        gates = r.get("gates", {})
        rows.append(
            [
                r.get("environment"),
                f"{r.get('users')} users, {r.get('seconds')} s",
                r.get("requests"),
                f"{r.get('rps', 0):.1f} (min {gates.get('min_rps')})",
                f"{r.get('p50_ms', 0):.0f}",
                f"{r.get('p95_ms', 0):.0f}",
                f"{r.get('p99_ms', 0):.0f} (max {gates.get('latency_p99_ms')})",
                r.get("errors"),
                _verdict(r.get("passed", False)),
            ]
        )
    if not rows:
        return []
    header = ["environment", "load", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"]
    return ["### Load tests", "", *_table([*header, "result"], rows)]


def deploys(folder: Path) -> list[str]:
    """This job's deploys (reports/deploys/<env>.json; the full history is in MLflow)."""
    # Here, not at the top: it loads MLflow, which only a job that deployed needs.
    from .deploy.records import DeployRecord

    rows = []
    for file in sorted(folder.glob("*.json")):
        r = DeployRecord.model_validate_json(file.read_text(encoding="utf-8"))
        rows.append(
            [
                r.time,
                r.environment,
                r.action,
                r.bento,
                r.model_version,
                r.actor,
                "ok" if r.success else f"**FAIL**: {r.error}",
            ]
        )
    header = ["time", "environment", "action", "bento", "model", "by", "result"]
    return ["### Deploys", "", *_table(header, rows)] if rows else []


def challenge(path: Path) -> list[str]:
    """Champion against challenger: the primary metric of both per set, then the verdict."""
    r = json.loads(path.read_text(encoding="utf-8"))
    metric, champion = r["metric"], r.get("champion") or {}
    title = f"### Challenge: version {r['challenger']['version']} against " + (
        f"champion version {champion['version']}" if champion else "no champion"
    )
    rows = [
        [name, found.get("rows"), _number(found.get("challenger", {}).get(metric, "")),
         _number(found.get("champion", {}).get(metric, "")),
         ("beats" if found["beats"] else "does not beat") if "beats" in found else "not compared"]
        for name, found in r.get("sets", {}).items()
    ]  # fmt: skip
    verdict = "**won**" if r.get("winner") else "**lost**"
    lines = [
        title,
        "",
        *_table(["set", "rows", f"challenger {metric}", "champion", "result"], rows),
    ]
    return [*lines, f"{verdict}: {r.get('reason')}", ""]


def render(paths: Paths) -> str:
    """The Markdown summary of every report found under the project."""
    sections = [
        (paths.reports / "junit", junit),
        (paths.validation_reports / "result.json", validation),
        (paths.evaluation_report, evaluation),
        (paths.challenge_report, challenge),
        (paths.reports / "loadtest", loadtests),
        (paths.reports / "deploys", deploys),
    ]
    lines: list[str] = []
    for source, section in sections:
        if not source.exists():
            continue
        try:
            lines += section(source)
        except (OSError, ValueError, ET.ParseError) as error:
            lines += [f"*{source.relative_to(paths.root)} could not be read: {error}*", ""]
    if not lines:
        return "No reports in this job.\n"
    return "\n".join(lines)
