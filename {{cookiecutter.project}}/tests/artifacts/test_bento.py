"""`make package` built a bento with the model, the package and uv.lock's requirements."""

from __future__ import annotations

import json
import tarfile
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from {{ cookiecutter.package }} import lock
from {{ cookiecutter.package }}.config import PACKAGE, PROJECT

pytestmark = pytest.mark.artifacts
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stored_bento(bento):
    import bentoml  # after conftest pointed BENTOML_HOME at the test project

    return bentoml.get(bento["tag"])


def test_the_bento_is_in_the_project_store_with_the_model_inside(stored_bento, bento, paths):
    assert Path(stored_bento.path).is_relative_to(paths.bentoml_home)
    assert bento["model_tag"] in [str(model.tag) for model in stored_bento.info.all_models]


def test_the_packed_model_is_the_trained_booster_and_card(bento, paths):
    import bentoml

    folder = Path(bentoml.models.get(bento["model_tag"]).path)

    assert (folder / "model.txt").read_bytes() == paths.model_file.read_bytes()
    assert json.loads((folder / "model.json").read_text()) == json.loads(
        paths.model_card.read_text()
    )


def test_the_bento_is_labelled_with_model_version_commit_and_data(stored_bento, trained):
    labels = stored_bento.info.labels

    assert labels["model_version"] == str(trained["model_version"])
    assert labels["git_commit"] == str(trained["git_commit"] or "unknown")
    assert labels["data_sha256"] == trained["data_sha256"]


def bento_requirements(stored_bento) -> str:
    return Path(stored_bento.path_of("env/python/requirements.txt")).read_text()


def test_python_requirements_are_the_locked_versions_of_the_bento_group(stored_bento, locked_pins):
    lines = [lock.requirement_of(entry) for entry in lock.entries(bento_requirements(stored_bento))]
    here = [Requirement(line) for line in lines]
    here = [r for r in here if r.marker is None or r.marker.evaluate()]

    assert lines and all("==" in line for line in lines), lines
    # Exactly uv.lock's versions of the service's packages and everything they pull in,
    # the very versions `make install` put in this venv.
    pins = {canonicalize_name(r.name): str(r.specifier).removeprefix("==") for r in here}
    assert pins == locked_pins("bento")
    for name in ("bentoml", "lightgbm", "numpy", "pydantic", "scipy"):
        assert pins[name] == version(name)
    assert not {"scikit-learn", "pandas"} & set(pins)  # only the pipeline needs them


def test_every_requirement_names_the_sha256_of_the_files_uv_lock_allows(stored_bento):
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())["package"]:
        files = [package.get("sdist", {}), *package.get("wheels", [])]
        key = f"{package['name']}=={package['version']}"
        locked[key] = {file["hash"] for file in files if "hash" in file}
    text = bento_requirements(stored_bento)
    found = [entry for entry in lock.entries(text) if not entry.startswith("#")]

    assert len(found) > 50
    for entry in found:
        requirement = lock.requirement_of(entry).split(";")[0].strip()
        if lock.hashes_of(entry):
            assert set(lock.hashes_of(entry)) == locked[requirement], requirement
        else:  # BentoML's own pin, appended unhashed: the lock's hashed entry covers it
            assert requirement.startswith("bentoml=="), entry
    # So an install in hash-checking mode takes nothing else (make_venv refuses any other).
    assert lock.unhashed(text) == []


def test_the_bento_holds_only_the_package_source(bento):
    # The exported archive is what ships; the store's copy gains __pycache__/ once served.
    with tarfile.open(bento["archive"]) as tar:
        names = [name.removeprefix("./") for name in tar.getnames()]
    source = [Path(name).parts[1:] for name in names if name.startswith("src/")]

    assert {parts[0] for parts in source} == {PACKAGE, "bentofile.yaml"}
    assert (PACKAGE, "service.py") in source
    assert not [parts for parts in source if "__pycache__" in parts]


def test_the_bento_leaves_out_the_ci_files_platform_sync_and_cd_engine(stored_bento):
    package = Path(stored_bento.path_of("src")) / PACKAGE
    held = {p.relative_to(package).as_posix() for p in package.rglob("*")}

    left_outs = ("cicd.py", "cicd_templates", "platforms", "deploy", "pipeline.py", "cli.py")
    for left_out in (*left_outs, "template_update.py"):
        assert not any(h == left_out or h.startswith(f"{left_out}/") for h in held), left_out
    # What the service imports is all there.
    for served in (
        "service.py",
        "model_card.py",
        "model.py",
        "single_row.py",
        "features.py",
        "config.py",
    ):
        assert served in held, served


def test_the_archive_in_dist_carries_the_model(bento, paths):
    archive = Path(bento["archive"])
    name, bento_version = bento["tag"].split(":")
    model_name, model_version = bento["model_tag"].split(":")

    assert archive.parent == paths.dist
    assert archive.name == f"{name}-{bento_version}.bento"
    assert archive.stat().st_size > 10_000
    with tarfile.open(archive) as tar:
        members = {Path(member).as_posix().removeprefix("./") for member in tar.getnames()}
    assert f"models/{model_name}/{model_version}/model.txt" in members
    assert f"src/{PACKAGE}/service.py" in members


def test_dist_bento_json_points_at_the_bento_just_built(bento, paths):
    record = json.loads((paths.dist / "bento.json").read_text())

    assert record == bento
    assert record["tag"].startswith(f"{PROJECT}:")
    assert Path(record["archive"]).exists()
