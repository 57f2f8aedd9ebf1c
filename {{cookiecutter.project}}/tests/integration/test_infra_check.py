"""Infrastructure check: the bento served from a venv of only its own requirements.

Each check builds a fresh venv from uv's cache (offline: no network in tests; and no
index page in the cache, as on a fresh machine) and starts a real `bentoml serve` with it,
so this module costs two server starts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from {{ cookiecutter.package }} import infra, lock, package

pytestmark = pytest.mark.integration
# name -> version of every distribution installed in the venv running it.
INSTALLED = (
    "import json, re; from importlib.metadata import distributions as d; print(json.dumps("
    "{re.sub(r'[-_.]+', '-', x.metadata['Name']).lower(): x.version for x in d()}))"
)


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network, and uv's cache as a fresh machine holds it after `make install`: the
    files `uv sync` fetched by their uv.lock URLs, but no index page (`uv pip install -r
    requirements.txt` resolves against those; the check must install without them)."""
    monkeypatch.setenv(infra.OFFLINE_VARIABLE, "1")
    found = subprocess.run([lock.uv(), "cache", "dir"], capture_output=True, text=True, check=True)
    cold = tmp_path_factory.mktemp("uv-cache")
    for bucket in Path(found.stdout.strip()).iterdir():
        if bucket.is_dir() and not bucket.name.startswith("simple-"):
            (cold / bucket.name).symlink_to(bucket)
    monkeypatch.setenv("UV_CACHE_DIR", str(cold))


def test_the_built_bento_served_from_its_own_requirements_answers_like_the_model(
    params, paths, bento, tmp_path, locked_pins
):
    result = infra.check(params, paths, bento["tag"], keep_venv_in=tmp_path)

    assert result.passed, result.error
    assert result.error is None
    assert result.smoke.passed and result.smoke.rows > 0
    assert result.smoke.max_abs_diff <= 1e-9
    assert result.smoke.serving == bento["tag"]
    assert any(pin.startswith("lightgbm==") for pin in result.requirements)
    # The venv is not the dev environment: packages the bento does not declare are absent.
    python = f"{result.venv}/bin/python"
    absent = subprocess.run([python, "-c", "import mlflow"], capture_output=True, text=True)
    assert "No module named 'mlflow'" in absent.stderr
    # It holds exactly uv.lock's versions of the bento group, nothing more, nothing else.
    listed = subprocess.run([python, "-c", INSTALLED], capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout) == locked_pins("bento")


def test_a_bento_missing_a_package_it_imports_fails_naming_the_module(
    params, paths, bento, job_root, tmp_path
):
    root = job_root(tmp_path)
    broken = package.build(params, root, exclude_packages=frozenset({"lightgbm"}))["tag"]

    result = infra.check(params, paths, broken)

    assert not result.passed
    assert not any(pin.startswith("lightgbm") for pin in result.requirements)
    assert result.error == (
        f"bento {broken} does not serve from its own requirements: "
        "ModuleNotFoundError: No module named 'lightgbm'"
    )
    # The venv was temporary: .state/ travels between CI jobs as an artifact.
    assert not Path(result.venv).exists()
    assert not list(paths.state.rglob("pyvenv.cfg"))
