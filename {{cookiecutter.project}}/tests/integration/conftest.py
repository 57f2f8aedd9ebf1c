"""Fixtures of the CD engine's scenarios (test_deploy.py, test_deploy_interrupted.py): each
module deploys to its own environments on free ports, so xdist can run them side by side."""

from __future__ import annotations

import pytest
import yaml
from deploys import build_from, environment_file

from {{ cookiecutter.package }} import serving
from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine
from {{ cookiecutter.package }}.deploy.environments import load_all


@pytest.fixture(scope="module")
def environments(paths: Paths):
    """test -> preprod -> production on free ports; every server stopped afterwards."""
    folder = paths.root / "environments"
    saved = {file.name: file.read_text() for file in folder.glob("*.yaml")}
    chain = [("test", None), ("preprod", "test"), ("production", "preprod")]
    for name, requires in chain:
        document = environment_file(name, requires, serving.free_port())
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEPLOY_PORT_OFFSET", raising=False)
        try:
            yield load_all(paths)
        finally:
            engine.down(paths)
            for name, text in saved.items():
                (folder / name).write_text(text)


@pytest.fixture(scope="module")
def second(params, bento, job_root, tmp_path_factory) -> str:
    """Another bento of the same model version, built once for the module: each test that
    deploys it reads only the last record, the served tag and the state it leaves, so one
    build serves them all (a build costs seconds)."""
    return build_from(params, job_root(tmp_path_factory.mktemp("second")))


@pytest.fixture(scope="module")
def deployed(params, paths, bento, environments) -> dict:
    """The first bento, deployed to test and verified there."""
    return engine.deploy(params, paths, "test", bento["tag"])
