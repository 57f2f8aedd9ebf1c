"""uv.lock: the bento's requirements come from it, and a lock that is missing or no longer
matches pyproject.toml stops the build, naming the fix (uv runs for real, offline)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from {{ cookiecutter.package }} import infra, lock

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
    for entry in lines:
        line = lock.requirement_of(entry)
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            [specifier] = requirement.specifier
            assert specifier.operator == "==", line
            pins[lock.name_of(line)] = specifier.version
    return pins


def test_the_bento_group_exports_every_locked_package_it_pulls_in_pinned(locked_pins):
    lines = lock.export(lock.BENTO_GROUP)

    assert applicable(lines) == locked_pins(lock.BENTO_GROUP)
    for name in ("bentoml", "lightgbm", "numpy", "pydantic", "scipy"):
        assert name in applicable(lines)
    # Nothing the service does not need: the dev tools and the pipeline's heavy packages.
    pipeline_only = {"mlflow", "great-expectations", "locust", "scikit-learn", "pandas"}
    assert not {"pytest", "ruff", *pipeline_only} & {lock.name_of(line) for line in lines}


def test_the_host_group_pins_supervisor():
    assert [lock.requirement_of(entry) for entry in lock.export("host")] == ["supervisor==4.3.0"]
    assert lock.export("host", hashes=False) == ["supervisor==4.3.0"]


def test_every_exported_entry_names_the_sha256_of_its_files():
    entries = lock.export(lock.BENTO_GROUP)

    assert entries and all(lock.hashes_of(entry) for entry in entries)
    assert all(digest.startswith("sha256:") for e in entries for digest in lock.hashes_of(e))
    assert lock.unhashed("\n".join(entries)) == []


@pytest.fixture
def host_requirements(tmp_path, monkeypatch) -> Path:
    """The host group's hashed requirements (supervisor: small, pure Python, in uv's cache)."""
    monkeypatch.setenv(infra.OFFLINE_VARIABLE, "1")
    file = tmp_path / "requirements.txt"
    file.write_text("\n".join(lock.export("host")) + "\n")
    return file


def test_a_venv_installs_files_whose_sha256_the_requirements_name(paths, host_requirements):
    python = infra.make_venv(paths, host_requirements.parent / "venv", host_requirements)

    assert python.exists()
    assert (python.parent.parent / "requirements.txt").read_text() == host_requirements.read_text()


def test_a_file_whose_sha256_differs_is_not_installed(paths, host_requirements):
    text = host_requirements.read_text()
    host_requirements.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, text))

    with pytest.raises(RuntimeError, match=r"(?s)failed: .*[Hh]ash mismatch"):
        infra.make_venv(paths, host_requirements.parent / "venv", host_requirements)


def test_a_requirement_without_a_hash_is_refused_before_anything_installs(paths, host_requirements):
    host_requirements.write_text(host_requirements.read_text() + "six==1.17.0\n")
    venv = host_requirements.parent / "venv"

    with pytest.raises(RuntimeError, match=r"names no sha256 for six==1.17.0: every requirement"):
        infra.make_venv(paths, venv, host_requirements)
    assert not (venv / "bin" / "supervisord").exists()


def test_the_bentos_entries_become_a_lock_file_of_exactly_those_packages(tmp_path):
    entries = lock.export(lock.BENTO_GROUP)[:3]

    file = lock.locked_files(entries, tmp_path)

    assert file is not None and file.name == "pylock.bento.toml"
    text = file.read_text()
    assert text.count("[[packages]]") == 3
    for entry in entries:
        name, version = lock.requirement_of(entry).split(" ;")[0].split("==")
        assert f'name = "{name}"\nversion = "{version}"' in text, entry
        assert all(f'sha256 = "{digest[7:]}"' in text for digest in lock.hashes_of(entry))


@pytest.mark.parametrize("change", ["another version", "another digest"])
def test_an_entry_uv_lock_does_not_hold_as_such_gets_no_lock_file(tmp_path, change):
    [entry, *rest] = lock.export(lock.BENTO_GROUP)
    digest = lock.hashes_of(entry)[0]
    if change == "another version":
        changed = re.sub(r"==[^ ;\\]+", "==0.0.1", entry, count=1)
    else:
        changed = entry.replace(digest, "sha256:" + "0" * 64)

    assert lock.locked_files([changed, *rest], tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_bentomls_own_unhashed_pin_is_covered_by_the_hashed_entry_of_that_version():
    hashed = "bentoml==1.4.40 \\\n    --hash=sha256:" + "a" * 64
    assert lock.unhashed(f"{hashed}\nbentoml==1.4.40\n") == []
    assert lock.unhashed(f"{hashed}\nbentoml==1.4.41\n") == ["bentoml==1.4.41"]


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
