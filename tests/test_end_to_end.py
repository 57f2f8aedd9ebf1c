"""Bake, install in a fresh uv environment, and run the generated project's own targets.

Slow (minutes): each test installs the pinned stack and runs real GX, LightGBM, MLflow
and a real BentoML server. Each pipeline shifts its environments' ports (3001-3003, which
the CI runs that deploy use) by an offset of its own, so they run beside anything else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import run

pytestmark = pytest.mark.slow

ANSWERED = re.compile(r"bento (\S+) answered \d+ rows like the in-process model")
# The pipeline closes with `monitor` on a shifted window replayed to production.
DRIFTED = re.compile(
    r"^window \S+: (\d+) rows of model version \S+ vs \d+ training rows; DRIFTED: ", re.M
)
REPORT = re.compile(r"^drift report: (\S+\.html)$", re.M)
STATUS_ROW = re.compile(
    r"^(test|preprod|production)\s+http://127\.0\.0\.1:\d+\s+(\S+)\s.*\s(yes|no)$", re.M
)


def assert_promoted_everywhere(output: str) -> None:
    """The status table shows all three environments healthy, serving the bento just built."""
    answered = ANSWERED.search(output)
    assert answered, output[-3000:]
    rows = {env: (bento, healthy) for env, bento, healthy in STATUS_ROW.findall(output)}
    assert rows == {env: (answered.group(1), "yes") for env in ("test", "preprod", "production")}, (
        output[-3000:]
    )


def assert_drift_reported(output: str) -> None:
    """The closing demo flagged the shifted window, scored its labels and wrote the report."""
    assert DRIFTED.search(output), output[-3000:]
    scored = re.search(r"^labelled performance: (.+)$", output, re.M)
    assert scored and "no verdict" not in scored.group(1), output[-3000:]
    report = REPORT.search(output)
    assert report and "distributions.png" in Path(report.group(1)).read_text(), output[-3000:]


def stage_timings(output: str) -> str:
    """The pipeline's closing table of seconds per stage, for the test report."""
    match = re.search(r"^stage\s+seconds$.*?^total\s+\S+$", output, re.M | re.S)
    return match.group(0) if match else "(no timing table in the output)"


def bake_and_make(cookies, task: str, targets: list[str], port: int, record_property):
    result = cookies.bake(extra_context={"task": task, "git_init": True})
    assert result.exit_code == 0, result.exception
    # The environments serve on 3001-3003 + the offset: 3101-3103 for PORT=3100, and so on.
    ports = [f"PORT={port}", f"DEPLOY_PORT_OFFSET={port - 3000}"]
    try:
        made = run(["make", *targets, *ports], cwd=result.project_path, timeout=2400)
    finally:
        # The pipeline leaves test, preprod and production serving; free their ports.
        run(["make", "down", *ports], cwd=result.project_path, timeout=120)
    output = made.stdout
    assert made.returncode == 0, output[-6000:]
    record_property("pipeline", f"{task}: make {' '.join(targets)}\n{stage_timings(output)}")
    return output


# The default project's own lint and tests run in tests/test_ci_runs.py, job by job, as its
# merge-request pipeline and pull-request workflow run them; here, its whole local pipeline.
@pytest.mark.parametrize(
    ("task", "port"), [("binary", 3100), ("multiclass", 3200), ("regression", 3500)]
)
def test_pipeline_serves_a_matching_prediction_for_each_task(cookies, record_property, task, port):
    output = bake_and_make(cookies, task, ["install", "pipeline"], port, record_property)
    assert_promoted_everywhere(output)
    assert_drift_reported(output)
