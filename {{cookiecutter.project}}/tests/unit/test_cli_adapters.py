"""The CLI's commands are thin adapters: each hands its arguments to one step (pipeline.py)
and the step to the library function. The library is a stand-in here."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from {{ cookiecutter.package }} import cli
from {{ cookiecutter.package }}.deploy import engine
from {{ cookiecutter.package }}.deploy.records import DeployRecord

pytestmark = pytest.mark.unit


@pytest.fixture
def engine_calls(monkeypatch) -> list[tuple]:
    """Each deploy action of the engine recorded, not run."""
    calls: list[tuple] = []

    def stand_in(action: str):
        def run(params, paths, *args):
            calls.append((action, params, paths, args))
            return DeployRecord(action=action, bento="b:1", model_version="1",
                                environment=args[0], url="http://127.0.0.1:1")  # fmt: skip

        return run

    for action in ("deploy", "promote", "rollback"):
        monkeypatch.setattr(engine, action, stand_in(action))
    monkeypatch.setattr(engine, "abort_on_signals", lambda: None)
    monkeypatch.setattr(cli, "_setup", lambda: ("params", "paths"))
    monkeypatch.delenv("BENTO", raising=False)
    return calls


def test_deploy_promote_and_rollback_hand_their_arguments_to_the_engine(engine_calls):
    for args in (
        ["deploy", "test", "--bento", "b:1"],
        ["promote", "preprod"],
        ["rollback", "test"],
    ):
        done = CliRunner().invoke(cli.app, args)
        assert done.exit_code == 0, done.output
        assert f"serves {args[1]} at http://127.0.0.1:1" in done.output

    assert engine_calls == [
        ("deploy", "params", "paths", ("test", "b:1")),
        ("promote", "params", "paths", ("preprod",)),
        ("rollback", "params", "paths", ("test",)),
    ]


def test_a_refused_deploy_is_one_line_and_exit_code_1(engine_calls, monkeypatch):
    def refuse(params, paths, *args):
        raise engine.Refused("production requires preprod: no bento verified there")

    monkeypatch.setattr(engine, "promote", refuse)

    done = CliRunner().invoke(cli.app, ["promote", "production"])

    assert done.exit_code == 1
    assert done.output == "production requires preprod: no bento verified there\n"


@pytest.mark.parametrize(
    ("command", "step", "given"),
    [
        (["pipeline", "--port", "3999"], "run", {"port": 3999}),
        (["loadtest", "--url", "http://127.0.0.1:1", "--env", "preprod"], "loadtest",
         {"url": "http://127.0.0.1:1", "env": "preprod"}),
        (["package", "--no-release"], "package", {"release": False}),
        (["evaluate"], "evaluate", {"defer_to_challenge": False}),
    ],
)  # fmt: skip
def test_each_stage_command_binds_its_arguments_to_the_steps_own_parameters(
    monkeypatch, command, step, given
):
    """The command hands (params, paths, say, *its arguments) on: checked against the real
    step's signature, so a step whose parameters are in another order fails here (as
    `pipeline` did once: its port reached `say`)."""
    import inspect

    from {{ cookiecutter.package }} import pipeline

    real = inspect.signature(getattr(pipeline, step))
    bound: dict = {}

    def stand_in(*args, **kwargs):
        bound.update(real.bind(*args, **kwargs).arguments)

    monkeypatch.setattr(pipeline, step, stand_in)
    monkeypatch.setattr(cli, "_setup", lambda: ("params", "paths"))

    done = CliRunner().invoke(cli.app, command)

    assert done.exit_code == 0, done.output
    assert bound["params"] == "params" and bound["paths"] == "paths"
    assert callable(bound["say"])
    assert {name: bound[name] for name in given} == given
