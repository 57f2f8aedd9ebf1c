"""The CI jobs' gates in the Makefile. `build` (CD) runs every pull-request check on the
commit, in order, and releases the bento only after all of them; `ci-retrain` trains only
on a retrain decision (or a reason that asks for it), fails closed when it cannot read one,
and packages a winner only; `ci-deploy-winner` deploys only a challenge's winner. The
project's command is a stand-in that records its calls, answers as told, and fails the
call named by $FAIL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """#!/bin/sh
echo "$*" >> calls.log
if [ "$*" = "$FAIL" ]; then echo "failed: $*" >&2; exit 1; fi
case "$*" in
  "ci monitor-decision") [ -n "$DECISION" ] || exit 1; printf 'retrain=%s\\nwindow=w1\\n' "$DECISION";;
  "challenge verdict") printf 'winner=%s\\nbento=churn:abc\\n' "$WINNER";;
esac
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(PROJECT_ROOT / "Makefile", tmp_path)
    cli = tmp_path / "cli.sh"
    cli.write_text(STAND_IN)
    cli.chmod(0o755)
    return tmp_path


def make(project: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    done = subprocess.run(
        ["make", "--no-print-directory", *args, f"CLI={project / 'cli.sh'}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    log = project / "calls.log"
    return done, log.read_text().splitlines() if log.exists() else []


TRAINING = ["retrain", "challenge verdict"]


def layer(name: str, *extra: str) -> str:
    return " ".join((f"pytest -m {name} --junitxml=reports/junit/{name}.xml", *extra))


# On every core: xdist workers, the longest modules first.
INTEGRATION = layer("integration", "-n auto --dist loadfile --no-loadscope-reorder")
# A pull request's checks, job by job (cicd.CHECKS), as `make build` runs them.
CHECK_CHAIN = [
    "pre-commit run --all-files --show-diff-on-failure",
    "lint-imports --no-cache",
    "mypy",
    layer("unit"),
    "data", "validate", layer("data"),
    "train", "evaluate",
    layer("model"),
    "package --no-release", layer("artifacts"), "infra-check",
    INTEGRATION,
    "ci import-bento", "ci service-check --env test", layer("service"),
]  # fmt: skip


def test_the_default_branch_build_runs_every_check_then_releases(project):
    done, calls = make(project, "build", f"RUN={project / 'cli.sh'}")

    assert done.returncode == 0, done.stderr
    assert calls == ["ci require-store-server", *CHECK_CHAIN, "release"]


@pytest.mark.parametrize("failing", [layer("unit"), INTEGRATION, layer("service")])
def test_a_failing_check_stops_the_build_before_anything_is_released(project, failing):
    done, calls = make(project, "build", f"RUN={project / 'cli.sh'}", FAIL=failing)

    assert done.returncode != 0
    assert calls[-1] == failing and "release" not in calls


def test_make_package_alone_releases_as_it_builds(project):
    done, calls = make(project, "package")

    assert done.returncode == 0, done.stderr
    assert calls == ["package"]


def test_a_drift_run_trains_nothing_when_the_monitor_decided_against_it(project):
    done, calls = make(project, "ci-retrain", REASON="drift", DECISION="false")
    assert done.returncode == 0, done.stderr
    assert "the monitor did not decide to retrain: nothing trained" in done.stdout
    assert calls == ["ci require-store-server", "ci monitor-decision"]


def test_a_drift_run_trains_and_challenges_on_a_retrain_decision(project):
    done, calls = make(project, "ci-retrain", REASON="drift", DECISION="true", WINNER="false")
    assert done.returncode == 0, done.stderr
    assert calls == ["ci require-store-server", "ci monitor-decision", *TRAINING]
    assert "the challenger lost: nothing packaged" in done.stdout


def test_a_drift_run_without_a_readable_decision_fails_closed(project):
    done, calls = make(project, "ci-retrain", REASON="drift")
    assert done.returncode != 0
    assert "data" not in calls


@pytest.mark.parametrize("reason", ["schedule", "manual"])
def test_a_scheduled_or_manual_run_retrains_without_asking_the_monitor(project, reason):
    done, calls = make(project, "ci-retrain", REASON=reason, WINNER="false")
    assert done.returncode == 0, done.stderr
    assert "ci monitor-decision" not in calls and calls[-len(TRAINING) :] == TRAINING


def test_the_winner_job_deploys_nothing_without_a_challenge_or_with_a_loser(project):
    done, calls = make(project, "ci-deploy-winner", "ENV=test")
    assert done.returncode == 0 and "no challenge ran: nothing to deploy" in done.stdout
    assert calls == []
    (project / "reports").mkdir()
    (project / "reports" / "challenge.json").write_text("{}")
    done, calls = make(project, "ci-deploy-winner", "ENV=test", WINNER="false")
    assert done.returncode == 0 and "the challenger did not win: nothing deployed" in done.stdout
    assert calls == ["challenge verdict"]


def test_the_winner_job_deploys_a_winner_to_its_environment(project):
    (project / "reports").mkdir()
    (project / "reports" / "challenge.json").write_text("{}")
    done, calls = make(project, "ci-deploy-winner", "ENV=test", WINNER="true")
    assert done.returncode == 0, done.stderr
    assert calls[0] == "challenge verdict"
    assert calls[-3:] == ["environments verify test", "deploy test", "down test --job-end"]


@pytest.mark.parametrize("winner", [True, False], ids=["winner", "loser"])
def test_a_winner_alone_is_packaged_and_checked(project, winner):
    (project / "dist").mkdir()
    (project / "dist" / "bento.json").write_text("{}")  # an earlier build's: cleared first

    run = f"RUN={project / 'cli.sh'}"
    done, calls = make(project, "ci-retrain", run, REASON="manual", WINNER=str(winner).lower())

    assert done.returncode == 0, done.stderr
    assert calls[: len(TRAINING) + 1] == ["ci require-store-server", *TRAINING]
    if winner:
        assert calls[len(TRAINING) + 1 :] == [
            "package", "pytest -m artifacts --junitxml=reports/junit/artifacts.xml", "infra-check",
        ]  # fmt: skip
    else:
        assert calls[len(TRAINING) + 1 :] == []
        assert "the challenger lost: nothing packaged" in done.stdout
    assert not (project / "dist" / "bento.json").exists()


# Each argument on a line of its own: a marker expression must reach pytest as one.
ARGUMENTS = """#!/bin/sh
printf '%s\\n' "$@" > arguments.log
"""


@pytest.mark.parametrize(
    "mark", ["integration", "not integration", 'unit or $(shell touch made) "; touch ran; "']
)
def test_make_test_hands_a_marker_expression_to_pytest_whole_and_as_text(project, mark):
    run = project / "run.sh"
    run.write_text(ARGUMENTS)
    run.chmod(0o755)

    done, _ = make(project, "test", f"RUN={run}", f"MARK={mark}")

    assert done.returncode == 0, done.stderr
    passed = (project / "arguments.log").read_text().splitlines()
    assert passed[passed.index("-m") + 1] == mark
    assert not (project / "made").exists() and not (project / "ran").exists()
