"""params.yaml is validated strictly and the project root is found from anywhere inside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from {{ cookiecutter.package }}.config import Paths, load_params

pytestmark = pytest.mark.unit

GOOD = {"task": "binary", "data": {"source": "sklearn:breast_cancer"}}


def write_params(folder: Path, content: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_no_test_sees_the_release_store_a_cd_job_configures():
    # CD's build job runs the test layers with the team's MLflow server exported (make build);
    # tests/conftest.py drops it: a project root's store is a SQLite file (config.Paths).
    assert not os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://"))
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ


def test_valid_params_load_with_defaults(tmp_path):
    params = load_params(write_params(tmp_path, GOOD))

    assert params.task == "binary"
    assert params.data.target == "target"
    assert params.data.categorical == []


def test_an_unknown_key_is_rejected_by_name(tmp_path):
    path = write_params(tmp_path, {**GOOD, "data": {**GOOD["data"], "catgorical": ["plan"]}})

    with pytest.raises(ValidationError, match="catgorical"):
        load_params(path)


def test_an_unknown_top_level_key_is_rejected_by_name(tmp_path):
    with pytest.raises(ValidationError, match="sede"):
        load_params(write_params(tmp_path, {**GOOD, "sede": 1}))


def test_a_bad_task_is_rejected_naming_the_field_and_the_choices(tmp_path):
    with pytest.raises(ValidationError) as error:
        load_params(write_params(tmp_path, {**GOOD, "task": "clustering"}))

    message = str(error.value)
    assert "task" in message
    assert "clustering" in message
    assert "regression" in message


def test_max_body_bytes_defaults_to_4_mib_and_is_read_from_serving(tmp_path):
    assert load_params(write_params(tmp_path, GOOD)).serving.max_body_bytes == 4 * 1024 * 1024

    params = load_params(write_params(tmp_path, {**GOOD, "serving": {"max_body_bytes": 2048}}))

    assert params.serving.max_body_bytes == 2048


@pytest.mark.parametrize("value", [0, -1, "a lot"])
def test_a_max_body_bytes_that_is_not_a_positive_integer_is_rejected_by_name(tmp_path, value):
    with pytest.raises(ValidationError, match="max_body_bytes"):
        load_params(write_params(tmp_path, {**GOOD, "serving": {"max_body_bytes": value}}))


def test_the_root_is_found_from_a_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    write_params(tmp_path, GOOD)
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)

    assert Paths.discover(nested).root == tmp_path.resolve()


def test_project_root_in_the_environment_wins(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_params(tmp_path, GOOD)
    monkeypatch.setenv("PROJECT_ROOT", str(elsewhere))

    assert Paths.discover(tmp_path).root == elsewhere.resolve()


def test_a_folder_outside_any_project_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PROJECT_ROOT", raising=False)

    with pytest.raises(FileNotFoundError, match="params.yaml"):
        Paths.discover(tmp_path)


def test_every_stage_path_lives_under_the_root(tmp_path):
    paths = Paths(tmp_path)

    assert paths.suite == tmp_path / "expectations" / "raw.json"
    assert paths.raw_data.is_relative_to(tmp_path)
    assert paths.validation_reports.is_relative_to(paths.reports)
