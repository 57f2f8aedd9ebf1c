"""`train` and `evaluate` wrote what they promised: files, MLflow run, registered version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pytest

from {{ cookiecutter.package }} import registry
from {{ cookiecutter.package }}.config import PROJECT, Paths
from {{ cookiecutter.package }}.evaluation_report import EvaluationReport
from {{ cookiecutter.package }}.model import Model

pytestmark = pytest.mark.artifacts

CARD_KEYS = {
    "spec",
    "run_id",
    "experiment_id",
    "model_name",
    "model_version",
    "data_sha256",
    "git_commit",
    "trained_at",
    "params",
}
PLOTS = {
    "binary": {"roc_curve.png", "confusion_matrix.png", "feature_importance.png"},
    "multiclass": {"confusion_matrix.png", "feature_importance.png"},
    "regression": {"residuals.png", "feature_importance.png"},
}


@pytest.fixture(scope="module")
def client(paths):
    return registry.client(paths)


def test_the_saved_booster_loads_and_expects_the_card_features(paths, trained):
    booster = lgb.Booster(model_file=str(paths.model_file))
    assert booster.feature_name() == [feature["name"] for feature in trained["spec"]["features"]]


def test_the_model_card_names_spec_run_version_data_and_commit(paths, trained):
    card = json.loads(paths.model_card.read_text())
    assert set(card) >= CARD_KEYS
    assert card == trained
    assert card["model_name"] == PROJECT
    assert isinstance(card["model_version"], str) and card["git_commit"]


def test_the_run_records_params_data_fingerprint_and_commit(client, trained, params, paths):
    run = client.get_run(trained["run_id"])
    fingerprint = json.loads(paths.fingerprint.read_text())["sha256"]
    assert run.info.experiment_id == trained["experiment_id"]
    assert run.data.params["seed"] == str(params.seed)
    assert run.data.params["task"] == params.task
    assert run.data.params["data_source"] == params.data.source
    for name, value in params.model.items():
        assert run.data.params[name] == str(value)
    assert run.data.params["data_sha256"] == fingerprint == trained["data_sha256"]
    assert run.data.tags["data_sha256"] == fingerprint
    assert run.data.tags["git_commit"] == trained["git_commit"]
    assert any(name.startswith("train_") for name in run.data.metrics)


def test_the_run_logged_a_model_with_a_signature_of_every_feature(trained, paths):
    registry.configure(paths)
    info = mlflow.models.get_model_info(trained["model_uri"])
    assert info.run_id == trained["run_id"]
    assert info.signature is not None
    names = [feature["name"] for feature in trained["spec"]["features"]]
    assert info.signature.inputs.input_names() == names


def test_the_registered_model_has_the_version_in_the_card(client, trained):
    version = client.get_model_version(PROJECT, trained["model_version"])
    assert version.run_id == trained["run_id"]


def test_the_run_and_version_keep_their_files_below_the_stores_own_mlruns(client, trained, paths):
    # Also when CI handed the store over from the train job's folder (tests/conftest.py):
    # what the tests log then lands in their copy, never in the project's mlruns/.
    here = paths.mlflow_artifacts.resolve().as_uri()
    run = client.get_run(trained["run_id"])
    version = client.get_model_version(PROJECT, trained["model_version"])
    experiment = client.get_experiment(trained["experiment_id"])
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    for location in (experiment.artifact_location, run.info.artifact_uri, logged.artifact_location):
        assert location == here or location.startswith(here + "/"), location
    spec = f"{run.info.artifact_uri}/{registry.SPEC_ARTIFACT}"
    assert Path(mlflow.artifacts.download_artifacts(spec)).is_file()


def test_evaluation_wrote_its_report_and_non_empty_plots(paths, params, evaluated):
    assert EvaluationReport.read(paths.evaluation_report) == evaluated
    written = {Path(plot).name: paths.root / plot for plot in evaluated.plots}
    assert set(written) == PLOTS[params.task]
    for path in written.values():
        assert path.stat().st_size > 0, f"{path} is empty"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_the_evaluation_was_logged_to_the_training_run_and_version(client, trained, evaluated):
    run = client.get_run(trained["run_id"])
    for name, value in evaluated.metrics.items():
        assert run.data.metrics[f"test_{name}"] == pytest.approx(value)
    assert run.data.metrics["gates_passed"] == 1.0
    logged = {item.path for item in client.list_artifacts(trained["run_id"], "evaluation")}
    assert "evaluation/evaluation.json" in logged
    version = client.get_model_version(PROJECT, trained["model_version"])
    assert version.tags["gates_passed"] == "true"


def test_a_moved_store_still_loads_the_registered_version(
    paths, trained, model, raw_data, tmp_path, monkeypatch
):
    # CI hands mlruns/ and mlruns.db from job to job, each in its own folder; MLflow itself
    # records absolute artifact paths, which then point at the first job's folder.
    moved = Paths(tmp_path / "moved")
    moved.root.mkdir()
    shutil.copytree(paths.mlflow_artifacts, moved.mlflow_artifacts)
    shutil.copy(paths.root / "mlruns.db", moved.root / "mlruns.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{moved.root / 'mlruns.db'}")
    version = registry.client(moved).get_model_version(PROJECT, trained["model_version"])
    original = paths.mlflow_artifacts.rename(paths.root / "mlruns-away")
    try:
        booster, spec = registry.load_version(moved, version)
    finally:
        original.rename(paths.mlflow_artifacts)
    assert spec.names == model.spec.names
    rows = raw_data.head(50)
    np.testing.assert_allclose(Model(booster, spec).raw(rows), model.raw(rows))
