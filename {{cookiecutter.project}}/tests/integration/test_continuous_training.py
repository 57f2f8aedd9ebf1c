"""Continuous training with the real stages, in a project of its own whose champion (the
version aliased production) was trained on the bundled data: a challenger trained where the
champion fails wins through `make retrain`, and its bento, released like any other, deploys
to test; one that does not beat the champion by the margin loses, with its reason."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_deploy import environment_file

from {{ cookiecutter.package }} import challenge, data, evaluate, features, registry, retraining, serving, train
from {{ cookiecutter.package }}.config import PROJECT, Paths, load_params
from {{ cookiecutter.package }}.deploy import engine

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WINDOW = "20260101T000000.000Z"


@pytest.fixture(scope="module")
def project(tmp_path_factory, paths: Paths, params, raw_data, stores_of, params_into):
    """The project and its champion's model card; every server it started stopped after."""
    root = Paths(tmp_path_factory.mktemp("retraining"))
    params_into(root.root)
    for folder in ("expectations", "environments"):
        shutil.copytree(paths.root / folder, root.root / folder)
    with stores_of(root), pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEPLOY_PORT_OFFSET", raising=False)
        data.materialise(params, root)
        champion = train.train(params, root)
        evaluate.evaluate(params, root)
        registry.client(root).set_registered_model_alias(
            PROJECT, registry.PRODUCTION, champion["model_version"]
        )
        try:
            yield root, champion
        finally:
            engine.down(root)


def relabelled(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The same rows and target values, the values handed out in the order of a feature the
    old target hardly depends on: a change only labels reveal. Features and the target's
    distribution are unchanged, so the data still passes the expectation suite."""
    numeric = frame.drop(columns=[target]).select_dtypes("number")
    varied = numeric.loc[:, numeric.nunique() >= len(frame) / 2]  # ties would blur the order
    weakest = varied.corrwith(frame[target].astype(float), method="spearman").abs().idxmin()
    order = frame[weakest].rank(method="first").to_numpy(dtype=int) - 1
    return frame.assign(**{target: np.sort(frame[target].to_numpy())[order]})


def test_a_challenger_no_better_than_the_champion_loses_with_its_reason(project, params):
    root, champion = project
    data.materialise(params, root)  # the champion's own data: the same model again

    card = train.train(params, root, retraining.why(root, "schedule", None))
    report = evaluate.evaluate(params, root, defer_to_challenge=True)
    result = challenge.run(params, root)

    assert report.passed, report.failures
    assert not result["winner"]
    assert result["reason"].startswith(
        f"does not beat champion version {champion['model_version']} on {result['metric']} "
        "by the 1% margin: held-out split"
    )
    held_out = result["sets"]["held_out"]
    assert held_out["challenger"] == held_out["champion"] and not held_out["beats"]
    assert json.loads(root.challenge_report.read_text()) == result
    client = registry.client(root)
    version = client.get_model_version(PROJECT, card["model_version"])
    assert version.tags["challenge.result"] == "lost"
    assert version.tags["challenge.reason"] == result["reason"]
    assert version.tags["challenge.champion_version"] == champion["model_version"]
    assert version.tags["retrain.reason"] == "schedule"
    run = client.get_run(card["run_id"])
    assert run.data.tags["retrain.reason"] == "schedule"
    assert run.data.metrics["challenge.won"] == 0.0
    verdict = challenge.verdict(root)
    assert (verdict["winner"], verdict["bento"]) == ("false", "")
    assert "bento" not in version.tags  # nothing released for it
    assert str(registry.production_version(root).version) == champion["model_version"]


def test_a_challenger_trained_where_the_champion_fails_wins_and_is_deployed_to_test(
    project, params, raw_data, tmp_path
):
    root, champion = project
    target = params.data.target
    relabelled(raw_data, target).to_csv(root.root / "relabelled.csv", index=False)
    settings = yaml.safe_load(root.params.read_text())
    settings["data"]["source"] = "relabelled.csv"
    root.params.write_text(yaml.safe_dump(settings))
    changed = load_params(root.params)
    # Served traffic under the new relation, labelled (what `make monitor` keeps).
    held_out = features.split(data.read_source(changed, root.root), changed)[1]
    window = held_out.iloc[np.random.default_rng(params.seed).integers(0, len(held_out), 60)]
    root.labelled_window.parent.mkdir(parents=True, exist_ok=True)
    window.to_parquet(root.labelled_window, index=False)
    monitored = tmp_path / f"{WINDOW}.json"
    monitored.write_text(
        json.dumps(
            {"window": WINDOW, "monitor_run_id": "a-monitoring-run", "decision": {"retrain": True},
             "model_version": champion["model_version"]}
        )
    )  # fmt: skip

    done = subprocess.run(
        ["make", "--no-print-directory", "retrain", "REASON=drift", f"MONITOR_REPORT={monitored}"],
        cwd=PROJECT_ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=900,
    )  # fmt: skip

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(root.challenge_report.read_text())
    assert result["winner"], result["reason"]
    assert set(result["sets"]) == {"held_out", "labelled"}
    assert all(found["beats"] for found in result["sets"].values())
    assert result["retrain"] == {
        "reason": "drift",
        "window": WINDOW,
        "monitor_run_id": "a-monitoring-run",
    }
    assert f"WINNER: beats champion version {champion['model_version']}" in done.stdout
    built = json.loads((root.dist / "bento.json").read_text())
    challenger = result["challenger"]["version"]
    assert built["model_version"] == challenger
    client = registry.client(root)
    tags = client.get_model_version(PROJECT, challenger).tags
    assert (tags["challenge.result"], tags["challenge.champion_version"]) == (
        "won", champion["model_version"],
    )  # fmt: skip
    assert tags["challenge.reason"] == result["reason"]
    assert tags["bento"] == built["tag"]  # released to the release store
    run = client.get_run(result["challenger"]["run_id"]).data
    assert (run.tags["retrain.reason"], run.tags["retrain.window"]) == ("drift", WINDOW)
    assert run.tags["retrain.monitor_run_id"] == "a-monitoring-run"
    assert run.metrics["challenge.won"] == 1.0
    assert challenge.verdict(root)["bento"] == built["tag"]

    test = environment_file("test", None, serving.free_port())
    (root.root / "environments" / "test.yaml").write_text(yaml.safe_dump(test))
    deployed = engine.deploy(changed, root, "test")

    assert deployed.success and deployed.bento == built["tag"]
    assert str(registry.version_by_alias(root, "test").version) == challenger
    # Production moves only by promotion, with its approval.
    assert str(registry.production_version(root).version) == champion["model_version"]
