"""CD refuses a release store that would die with its job, and a bento tag it cannot trust."""

from __future__ import annotations

import pytest

from {{ cookiecutter.package }} import release_store
from {{ cookiecutter.package }}.config import Paths

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("uri", "found"),
    [
        ("", "it is not set"),
        ("sqlite:////builds/project/mlruns.db", "a store inside this job"),
        ("file:///builds/project/mlruns", "a store inside this job"),
    ],
)
def test_cd_without_a_tracking_server_stops_saying_what_to_set(tmp_path, monkeypatch, uri, found):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    with pytest.raises(RuntimeError) as stopped:
        release_store.require_server(Paths(tmp_path))

    message = str(stopped.value)
    assert "\n" not in message and found in message
    assert "set MLFLOW_TRACKING_URI to the team's MLflow server" in message


def test_cd_with_a_tracking_server_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")

    assert release_store.require_server(Paths(tmp_path)) == "https://mlflow.example.com"


@pytest.mark.parametrize(
    "tag",
    [
        "other-model:abc",
        "{{ cookiecutter.project }}:$(shell touch pwned)",
        "{{ cookiecutter.project }}:abc; rm -rf /",
        "{{ cookiecutter.project }}:` and tags.x != '",
        "{{ cookiecutter.project }}:" + "a" * 64,
        "{{ cookiecutter.project }}:",
    ],
)
def test_a_bento_tag_outside_bentomls_grammar_is_refused_before_any_use(tag):
    with pytest.raises(release_store.NotReleased, match="is not a bento tag of"):
        release_store.check_tag(tag)


def test_a_well_formed_bento_tag_passes():
    tag = "{{ cookiecutter.project }}:whqwcwhm7kz7wax4"

    assert release_store.check_tag(tag) == tag
