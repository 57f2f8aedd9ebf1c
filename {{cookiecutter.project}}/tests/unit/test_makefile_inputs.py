"""What a CI form passes to Make (a bento tag, an action) is text, never code."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Stands in for the project's command: prints the BENTO the CLI would read, runs nothing.
ECHO_BENTO = "printenv BENTO #"


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("target", [["infra-check"], ["deploy", "ENV=test"]])
@pytest.mark.parametrize("attack", ["$(shell touch {marker})", "x; touch {marker}"])
def test_a_bento_from_a_form_reaches_the_cli_as_text_and_runs_nothing(tmp_path, target, attack):
    marker = tmp_path / "pwned"
    bento = attack.format(marker=marker)

    done = make(*target, f"CLI={ECHO_BENTO}", f"BENTO={bento}")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bento
    assert not marker.exists()


def test_an_action_other_than_deploy_promote_or_rollback_stops_ci_deploy(tmp_path):
    marker = tmp_path / "pwned"

    done = make("ci-deploy", "ENV=test", f"ACTION=$(shell touch {marker})", "CLI=true")

    assert done.returncode != 0
    assert "ACTION must be deploy, promote or rollback" in done.stderr
    assert not marker.exists()


def test_a_ci_deploy_job_refuses_to_turn_into_a_dry_run():
    done = make("ci-deploy", "ENV=production", "ACTION=promote", "CLI=true", "KUBERNETES_DRY_RUN=1")

    assert done.returncode != 0
    assert "KUBERNETES_DRY_RUN is set: a CI deploy job deploys for real or fails" in done.stderr
