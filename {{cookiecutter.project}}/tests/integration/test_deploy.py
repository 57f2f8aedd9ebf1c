"""The CD engine on the local target: real `bentoml serve` processes on 127.0.0.1.

One scenario per module (each server start costs seconds): a good bento is deployed to
test, then a broken one is refused, a second one deployed and rolled back, and
everything is stopped. The environments get free ports and a short load test.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml
from deploys import bento_at, build_from, environment_file, reverse_feature_order

from {{ cookiecutter.package }} import loadtest, registry, serving, smoke
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.deploy import engine, records

pytestmark = pytest.mark.integration


def test_production_refuses_a_bento_not_verified_in_preprod(params, paths, bento, environments):
    with pytest.raises(engine.Refused) as refused:
        engine.deploy(params, paths, "production", bento["tag"])

    assert str(refused.value) == (
        f"bento {bento['tag']} has not been verified in preprod: run make promote ENV=preprod first"
    )
    assert not serving.listening(environments["production"].port)


def test_a_disk_short_of_space_refuses_the_deploy_before_anything_changes(
    params, paths, bento, environments, monkeypatch
):
    monkeypatch.setenv(engine.MIN_FREE_MB_VARIABLE, str(2**40))  # more than any disk here
    attempts = len(records.read(paths, "test"))
    with pytest.raises(engine.Refused, match=r"MB free under .*: a deploy needs 1099511627776 MB"):
        engine.deploy(params, paths, "test", bento["tag"])
    assert not serving.listening(environments["test"].port)
    assert len(records.read(paths, "test")) == attempts


def test_promoting_before_anything_is_verified_in_the_required_environment_names_the_step(
    params, paths, environments
):
    # Environments no module deploys to: the session's store keeps every module's records,
    # and a module that ran earlier on this worker may have verified a bento in test.
    folder = paths.root / "environments"
    for name, requires in (("qa", None), ("staging", "qa")):
        document = environment_file(name, requires, serving.free_port())
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    try:
        with pytest.raises(engine.Refused, match="run make deploy ENV=qa first"):
            engine.promote(params, paths, "staging")
    finally:
        for name in ("qa", "staging"):
            (folder / f"{name}.yaml").unlink()


def test_a_deploy_passes_its_checks_serves_the_bento_and_is_recorded(
    paths, bento, trained, environments, deployed
):
    assert deployed.success, deployed
    checks = deployed.checks
    assert checks["health"]["passed"] and checks["smoke"]["passed"]
    assert checks["loadtest"]["passed"] and checks["loadtest"]["requests"] > 0
    assert checks["after_switch"]["smoke"]["passed"]
    assert bento_at(environments["test"].url) == bento["tag"]
    assert records.read(paths)[-1] == deployed
    version = registry.client(paths).get_model_version_by_alias(PROJECT, "test")
    assert str(version.version) == str(trained["model_version"])
    assert version.tags["deploy.test.bento"] == bento["tag"]
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert row.healthy and row.running == bento["tag"]
    assert row.record.action == "deploy"


def test_a_bento_failing_its_smoke_check_leaves_the_previous_one_serving(
    params, paths, bento, environments, deployed, job_root, tmp_path
):
    broken = build_from(params, job_root(tmp_path), tamper=reverse_feature_order)

    with pytest.raises(engine.DeployFailed, match="smoke") as failed:
        engine.deploy(params, paths, "test", broken)

    assert f"test still serves {bento['tag']}" in str(failed.value)
    url = environments["test"].url
    assert bento_at(url) == bento["tag"]
    record = smoke.to_records(smoke.held_out_rows(params, paths).head(1), _names(paths))
    assert httpx.post(f"{url}/predict", json={"records": record}, timeout=30).status_code == 200
    last = records.read(paths)[-1]
    assert (last.bento, last.success) == (broken, False)
    assert last.checks["smoke"]["passed"] is False
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert row.healthy and row.running == bento["tag"]
    assert row.last_failure.bento == broken


def _names(paths: Paths) -> list[str]:
    return [f["name"] for f in json.loads(paths.model_card.read_text())["spec"]["features"]]


def test_an_impossible_load_test_gate_fails_naming_the_gate_and_the_measure(
    params, paths, environments, deployed
):
    strict = environments["test"].model_copy(deep=True)
    strict.gates.latency_p99_ms = 0.001
    strict.gates.min_rps = 1_000_000

    result = loadtest.run(params, paths, strict.url, strict)

    assert not result["passed"]
    assert any(f.startswith("latency_p99_ms: measured p99") for f in result["failures"])
    assert any(f.startswith("min_rps: measured") for f in result["failures"])
    reports = loadtest.report_dir(paths, "test")
    assert (reports / "locust_stats.csv").exists() and (reports / "report.html").exists()


def test_rollback_restores_the_previous_bento_as_a_new_record(
    params, paths, bento, environments, deployed, second
):
    engine.deploy(params, paths, "test", second)
    assert bento_at(environments["test"].url) == second
    before = records.read(paths)

    rolled = engine.rollback(params, paths, "test")

    assert (rolled.action, rolled.bento, rolled.success) == (
        "rollback",
        bento["tag"],
        True,
    )
    assert rolled.previous_bento == second
    assert bento_at(environments["test"].url) == bento["tag"]
    after = records.read(paths)
    assert after[: len(before)] == before and after[-1] == rolled
    [row] = [r for r in engine.status(paths) if r.environment == "test"]
    assert (row.running, row.record.action) == (bento["tag"], "rollback")


def test_down_stops_every_environment(paths, environments, deployed):
    stopped = engine.down(paths)

    assert "test" in stopped
    for environment in environments.values():
        assert not serving.listening(environment.port)
    assert not any(row.healthy for row in engine.status(paths))
