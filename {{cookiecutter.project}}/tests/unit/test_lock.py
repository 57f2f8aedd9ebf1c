"""uv.lock: the bento's requirements come from it, and a lock that is missing or no longer
matches pyproject.toml stops the build, naming the fix (uv runs for real, offline)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from {{ cookiecutter.package }} import lock

pytestmark = pytest.mark.unit
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("UV_OFFLINE", "1")


def project_copy(folder: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(PROJECT_ROOT / name, folder / name)
    return folder


def applicable(lines: list[str]) -> dict[str, str]:
    """name -> version of the pinned lines whose marker holds for this interpreter."""
    pins = {}
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            [specifier] = requirement.specifier
            assert specifier.operator == "==", line
            pins[lock.name_of(line)] = specifier.version
    return pins


def test_the_bento_group_exports_every_locked_package_it_pulls_in_pinned(locked_pins):
    lines = lock.export(lock.BENTO_GROUP)

    assert applicable(lines) == locked_pins(lock.BENTO_GROUP)
    for name in ("bentoml", "lightgbm", "numpy", "pandas", "pydantic", "scikit-learn", "scipy"):
        assert name in applicable(lines)
    # Nothing the service does not need: the dev tools and the pipeline's heavy packages.
    assert not {"pytest", "ruff", "mlflow", "great-expectations", "locust"} & {
        lock.name_of(line) for line in lines
    }


def test_the_host_group_pins_supervisor():
    assert lock.export("host") == ["supervisor==4.3.0"]


def test_a_lock_that_no_longer_matches_pyproject_stops_the_export(tmp_path):
    project = project_copy(tmp_path)
    pyproject = project / "pyproject.toml"
    # A new direct dependency (already locked as a transitive one), not re-locked.
    text = re.sub(r"(dependencies = \[\n)", r'\1    "numpy",\n', pyproject.read_text(), count=1)
    pyproject.write_text(text)

    with pytest.raises(RuntimeError) as raised:
        lock.export(lock.BENTO_GROUP, project)

    assert str(raised.value) == (
        f"uv export of group 'bento' from {project}/uv.lock failed: The lockfile at `uv.lock` "
        "needs to be updated, but `--locked` was provided. (after changing pyproject.toml, "
        "`make lock` updates uv.lock; commit both)"
    )


def test_a_missing_lock_stops_the_export_naming_make_install(tmp_path):
    project = project_copy(tmp_path)
    (project / "uv.lock").unlink()

    with pytest.raises(FileNotFoundError, match=r"uv.lock is missing: run `make install`"):
        lock.export(lock.BENTO_GROUP, project)
