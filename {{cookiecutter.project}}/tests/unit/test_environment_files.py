"""Every consumer of environments/*.yaml reads the files the same way: one schema, one loader.

The same sets of files go to CI rendering (cicd.py: `make ci-files`, and the bake runs it as
`python -m <package>.cicd`), the CD engine and `environments sync`. A set they accept gives
every environment the same promotion in each; a set one refuses, each refuses with the same
one-line message naming the file and the field. (The bake itself: the template's
tests/test_hooks.py.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_targets import CLUSTER, HOST

from {{ cookiecutter.package }} import cicd
from {{ cookiecutter.package }}.config import Paths
from {{ cookiecutter.package }}.deploy import engine
from {{ cookiecutter.package }}.platforms import sync

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GATES = {"latency_p99_ms": 800, "min_rps": 10, "load_test": {"users": 2, "seconds": 5}}


def environment(name: str, requires: str | None, **fields: object) -> dict[str, object]:
    document: dict[str, object] = {
        "name": name,
        "requires": requires,
        "promotion": "manual",
        "gates": GATES,
        "deploy": {"target": "local", "port": 3005},
    }
    return {**document, **fields}


def without(document: dict[str, object], *fields: str) -> dict[str, object]:
    return {key: value for key, value in document.items() if key not in fields}


def shipped(name: str, **fields: object) -> dict[str, object]:
    """The project's own environments/<name>.yaml, with `fields` changed."""
    document = yaml.safe_load((PROJECT_ROOT / "environments" / f"{name}.yaml").read_text())
    return {**document, **fields}


# File name -> document, written over a copy of the project's environments/.
VALID: dict[str, dict[str, dict[str, object]]] = {
    "as-shipped": {},
    "canary-after-production": {"canary.yaml": environment("canary", "production")},
    "semi-auto-canary": {"canary.yaml": environment("canary", "test", promotion="semi-auto")},
    # CI once rendered this as an automatic deploy job, the CD engine as a manual one.
    "canary-without-promotion": {
        "canary.yaml": without(environment("canary", "production"), "promotion")
    },
    "production-on-a-host": {"production.yaml": shipped("production", deploy=HOST)},
    "a-fraction-of-a-second-of-load": {
        "canary.yaml": environment(
            "canary", "production", gates={**GATES, "load_test": {"users": 1, "seconds": 0.5}}
        )
    },
    "production-on-a-cluster": {"production.yaml": shipped("production", deploy=CLUSTER)},
}
# (files, the file the message names, the fields it names)
INVALID: dict[str, tuple[dict[str, dict[str, object]], str, list[str]]] = {
    # CI once rendered this as an automatic deploy job the CD engine then refused to run.
    "canary-without-promotion-or-gates": (
        {"canary.yaml": without(environment("canary", "production"), "promotion", "gates")},
        "canary.yaml",
        ["field gates: Field required"],
    ),
    "unknown-promotion": (
        {"canary.yaml": environment("canary", "production", promotion="sometimes")},
        "canary.yaml",
        ["field promotion: Input should be 'auto', 'semi-auto' or 'manual'"],
    ),
    "requires-an-unknown-environment": (
        {"canary.yaml": environment("canary", "nowhere")},
        "canary.yaml",
        ["field requires: no environment named 'nowhere'"],
    ),
    # Named by the folder: a cycle is no one file's fault.
    "requires-forms-a-cycle": (
        {"a.yaml": environment("a", "b"), "b.yaml": environment("b", "a", deploy={"port": 3006})},
        "",
        ["field requires forms a cycle between a, b"],
    ),
    "host-without-runner": (
        {"production.yaml": shipped("production", deploy=without(HOST, "runner"))},
        "production.yaml",
        ["field deploy.runner: Field required"],
    ),
    "local-without-port": (
        {"canary.yaml": environment("canary", "production", deploy={"target": "local"})},
        "canary.yaml",
        ["field deploy.port: Field required"],
    ),
    "name-differs-from-file": (
        {"canary.yaml": environment("staging", "production")},
        "canary.yaml",
        ["field name: 'staging' must match the file name 'canary'"],
    ),
}


def project(tmp_path: Path, files: dict[str, dict[str, object]]) -> Paths:
    shutil.copytree(PROJECT_ROOT / "environments", tmp_path / "environments")
    for name, document in files.items():
        (tmp_path / "environments" / name).write_text(yaml.safe_dump(document, sort_keys=False))
    return Paths(tmp_path)


def rendered(paths: Paths) -> dict[str, str]:
    """Each environment's promotion as the rendered GitHub deploy job's name states it."""
    files = cicd.render(paths.root, ["github", "gitlab"])
    jobs = yaml.safe_load(files[".github/workflows/cd.yml"])["jobs"]
    named = (
        re.fullmatch(r"Deploy to (\S+) \(([a-z-]+); .+\)", job["name"]) for job in jobs.values()
    )
    return {found[1]: found[2] for found in named if found}


def rendered_by_the_bake(paths: Paths) -> subprocess.CompletedProcess[str]:
    """The renderer as the Cookiecutter hook and `make template-update` run it."""
    return subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package }}.cicd", str(paths.root), "gitlab"],
        capture_output=True,
        text=True,
    )


def synced(paths: Paths) -> list[str]:
    """`environments sync --platform gitlab --dry-run`: the environments it would apply."""
    return sync.sync(paths, "gitlab", dry_run=True, echo=lambda line: None)


@pytest.mark.parametrize("files", VALID.values(), ids=VALID)
def test_a_valid_set_means_the_same_to_every_consumer(tmp_path, files):
    paths = project(tmp_path, files)

    promotions = rendered(paths)
    jobs = cicd.deploy_jobs(paths.root)
    loaded = engine.load_all(paths)

    order = [job.name for job in jobs]
    assert order == list(loaded) == synced(paths) == list(promotions)
    for name, promotion in promotions.items():
        assert engine.get(paths, name).promotion == promotion, name
    written = {
        name: yaml.safe_load((paths.root / "environments" / f"{name}.yaml").read_text())
        for name in order
    }
    # What the file says; left out, the strictest mode.
    assert promotions == {name: doc.get("promotion", "manual") for name, doc in written.items()}
    assert rendered_by_the_bake(paths).returncode == 0


@pytest.mark.parametrize(("files", "file", "fields"), INVALID.values(), ids=INVALID)
def test_an_invalid_set_is_refused_by_every_consumer_with_one_message(
    tmp_path, files, file, fields
):
    paths = project(tmp_path, files)
    messages = []
    for consumer in (
        lambda: cicd.render(paths.root, ["github", "gitlab"]),
        lambda: engine.load_all(paths),
        lambda: synced(paths),
    ):
        with pytest.raises(ValueError) as refused:
            consumer()
        messages.append(str(refused.value))
    bake = rendered_by_the_bake(paths)

    [message] = set(messages)
    assert message.startswith(f"{paths.root / 'environments' / file}")
    for field in fields:
        assert field in message
    assert "\n" not in message
    assert bake.returncode == 1
    assert bake.stderr == cicd.REFUSED + message + "\n"
    assert not (paths.root / ".gitlab-ci.yml").exists()
