"""An expected error ends in one line and exit code 1; --traceback or TRACEBACK=1 shows its
traceback instead."""

from __future__ import annotations

import sys

import pytest

from {{ cookiecutter.package }} import cli

pytestmark = pytest.mark.unit


@pytest.fixture
def outside_a_project(tmp_path, monkeypatch):
    """A folder with no params.yaml above it: every stage command fails, expectedly."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROJECT_ROOT", raising=False)
    monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
    return tmp_path


def run(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["prog", *args])
    cli.main()


def test_an_expected_error_is_one_line_and_exit_code_1(outside_a_project, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(monkeypatch, "status")

    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        f"error: no params.yaml in {outside_a_project.resolve()} or any parent folder\n"
    )


def test_the_traceback_option_shows_the_error_with_its_traceback(outside_a_project, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no params.yaml in"):
        run(monkeypatch, "--traceback", "status")


def test_the_traceback_variable_shows_it_too(outside_a_project, monkeypatch):
    monkeypatch.setenv(cli.TRACEBACK_VARIABLE, "1")

    with pytest.raises(FileNotFoundError, match="no params.yaml in"):
        run(monkeypatch, "status")


def test_the_switch_lasts_one_command(outside_a_project, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError):
        run(monkeypatch, "--traceback", "status")
    with pytest.raises(SystemExit):
        run(monkeypatch, "status")

    assert capsys.readouterr().err.startswith("error: no params.yaml")
