"""Shared fixtures: each session runs the real stages in an isolated copy of the project.

The copy has its own data/, models/, MLflow SQLite store and BentoML home, so tests
never touch the developer's stores and always exercise real MLflow, GX, LightGBM
and BentoML. Test modules must import bentoml lazily: BENTOML_HOME is set here.

With TESTS_REUSE_OUTPUTS=1 (CI's data, model, package, integration and service jobs: their
make targets set it) the copy takes the stage outputs the jobs before handed over (data/,
models/, the MLflow store, reports/, dist/) instead of building them again: the tests then
check the very data, model and bento that CD releases. A developer's `make test` builds
every stage afresh, since outputs lying in a working copy may be older than its code.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import sqlite3
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import mlflow
import pytest
import shards

from {{ cookiecutter.package }}.config import Paths, load_params
from {{ cookiecutter.package }}.evaluation_report import EvaluationReport

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SWITCHED = ("PROJECT_ROOT", "MLFLOW_TRACKING_URI")
REUSE_OUTPUTS = os.environ.get("TESTS_REUSE_OUTPUTS") == "1"
# What a CI job sets that no test may use. CD's build job runs these tests with the team's
# release store configured: no test may reach it (without these, a project root's store is
# its own mlruns.db, config.Paths). Nor may a test write to the job's step summary or
# outputs (a test's monitor run would show on the pull request's checks); tests that need
# them set their own.
for _variable in (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN", "MLFLOW_S3_ENDPOINT_URL", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT",
):  # fmt: skip
    os.environ.pop(_variable, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations", action="store_true",
        help="record each module's seconds in tests/durations.json (CI's parallel jobs split by it)",
    )  # fmt: skip


def pytest_report_header() -> str:
    """Whether this run tests the outputs handed over or builds them (the job log's head)."""
    if not REUSE_OUTPUTS:
        return "stage outputs: built by the tests"
    built = PROJECT_ROOT / "dist" / "bento.json"
    bento = json.loads(built.read_text())["tag"] if built.exists() else "none"
    return f"stage outputs: handed over (TESTS_REUSE_OUTPUTS=1), bento {bento}"


@pytest.hookimpl(trylast=True)  # after -m has deselected the other layers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In one of a layer's parallel CI jobs (CI_NODE_INDEX of CI_NODE_TOTAL), keep only the
    modules shards.assign gives it. Under xdist (whose workers' order the controller hands
    out, module by module: the Makefile's --no-loadscope-reorder), the longest modules first."""
    recorded = shards.recorded()
    try:
        mine = shards.kept([item.nodeid for item in items], os.environ, recorded)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    if mine is not None:
        keep = set(mine)
        config.hook.pytest_deselected(items=[item for item in items if item.nodeid not in keep])
        items[:] = [item for item in items if item.nodeid in keep]
    if hasattr(config, "workerinput"):
        by_id = {item.nodeid: item for item in items}
        items[:] = [by_id[nodeid] for nodeid in shards.longest_first(list(by_id), recorded)]


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Setup, call and teardown: a module's fixtures are part of what it costs a job.
    module = shards.module_of(report.nodeid)
    _measured[module] = _measured.get(module, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under xdist the controller sees every worker's reports; the workers write nothing.
    if session.config.getoption("store_durations") and not hasattr(session.config, "workerinput"):
        shards.store(_measured, PROJECT_ROOT)


# pytest's cache folder for the empty MLflow store (set in pytest_configure; None when
# pytest runs without its cache, as a test's own `pytest --collect-only -p no:cacheprovider`).
_schema_cache: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _schema_cache
    if (cache := getattr(config, "cache", None)) is not None:
        _schema_cache = cache.mkdir("mlflow-empty-store")


@functools.cache
def _migrated_store() -> Path:
    """An empty MLflow SQLite store. MLflow makes one by running its schema migrations
    (~1.5 s), so it is made once per MLflow version and kept in pytest's cache for every
    later test process, the other xdist worker's and later runs' (--cache-clear drops it)."""
    kept = _schema_cache / f"mlflow-{mlflow.__version__}.db" if _schema_cache else None
    if kept is not None and kept.exists():
        return kept
    folder = Path(tempfile.mkdtemp(prefix="mlflow-schema-"))
    atexit.register(shutil.rmtree, folder, True)
    store = folder / "mlruns.db"
    mlflow.MlflowClient(f"sqlite:///{store}").search_experiments()
    if kept is not None:  # whole or not at all: the other worker may be writing it too
        staged = kept.with_name(f"{kept.name}.{os.getpid()}")
        shutil.copy(store, staged)
        os.replace(staged, kept)
    return store


def seed_store(root: Path) -> Path:
    """`root`'s MLflow store, created empty if it has none: as a copy, since MLflow creates
    a SQLite store by running its schema migrations and the tests make dozens."""
    store = root / "mlruns.db"
    if not store.exists():
        root.mkdir(parents=True, exist_ok=True)
        shutil.copy(_migrated_store(), store)
    return store


@pytest.fixture(scope="session")
def empty_store():
    """`empty_store(root)`: `root` with an empty MLflow store (seed_store)."""
    return seed_store


def copy_params(root: Path) -> None:
    """params.yaml into another project root, with the data source it names: a relative
    path (your own CSV or Parquet file) is linked there, so the copy reads the same file."""
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    source = load_params(PROJECT_ROOT / "params.yaml").data.source
    if not source.startswith("sklearn:") and not Path(source).is_absolute():
        linked = root / source
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to((PROJECT_ROOT / source).resolve())


@pytest.fixture(scope="session")
def params_into():
    """`params_into(root)`: this project's params.yaml, and its data source, in `root`."""
    return copy_params


@pytest.fixture(scope="session")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """A throwaway project root with the real params, suites and environments."""
    root = tmp_path_factory.mktemp("project")
    copy_params(root)
    for folder in ("expectations", "environments"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder)
    os.environ["PROJECT_ROOT"] = str(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{seed_store(root)}"
    os.environ["BENTOML_HOME"] = str(root / ".bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    return Paths(root)


@pytest.fixture(scope="session")
def params(paths: Paths):
    return load_params(paths.params)


def handed_over(path: str, stage: str) -> Path:
    """An output of `make <stage>` in the project root, which CI handed to this job."""
    found = PROJECT_ROOT / path
    if not found.exists():
        raise pytest.UsageError(
            f"TESTS_REUSE_OUTPUTS=1 but {path} is missing: run `make {stage}` first, or unset "
            "it to build every stage in the tests (CI hands it over from an earlier job)"
        )
    return found


def take_store(root: Path) -> None:
    """The project's MLflow SQLite store and artifacts, moved to `root`.

    MLflow records absolute artifact locations (the train job's folder); they are rewritten
    to the copy's mlruns/, so what the tests log or register lands there, never in the
    project's. The columns are those of MLflow's schema that hold a location.
    """
    shutil.copy(handed_over("mlruns.db", "train"), root / "mlruns.db")
    shutil.copytree(handed_over("mlruns", "train"), root / "mlruns")
    new = (root / "mlruns").resolve().as_uri()
    with closing(sqlite3.connect(root / "mlruns.db")) as store, store:
        # A working copy's store that has seen deploys holds aliases and deploy records the
        # tests do not expect; CI's comes straight from the train job.
        if deployed := [a for (a,) in store.execute("SELECT alias FROM registered_model_aliases")]:
            raise pytest.UsageError(
                f"TESTS_REUSE_OUTPUTS=1 but mlruns.db has seen deploys (aliases: "
                f"{', '.join(deployed)}); the tests take it only as `make train` leaves it: "
                "unset it (`make test MARK=...` builds every stage in the tests)"
            )
        recorded = store.execute("SELECT DISTINCT artifact_location FROM experiments")
        # Shortest first: a location below another one is moved with it.
        for old in sorted((location for (location,) in recorded), key=len):
            if not old.startswith("file://") or old == new:
                continue
            for table, column in (
                ("experiments", "artifact_location"), ("runs", "artifact_uri"),
                ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
            ):  # fmt: skip
                store.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, len(old), old),
                )


@pytest.fixture(scope="session")
def raw_data(paths: Paths, params):
    """`make data`: the materialised dataset."""
    from {{ cookiecutter.package }} import data

    if REUSE_OUTPUTS:
        shutil.copytree(handed_over("data", "data"), paths.root / "data", dirs_exist_ok=True)
    else:
        data.materialise(params, paths)
    return data.load_raw(paths)


@pytest.fixture(scope="session")
def trained(paths: Paths, params, raw_data) -> dict:
    """`make train`: the model card of a freshly trained, registered model."""
    from {{ cookiecutter.package }} import data, train

    if not REUSE_OUTPUTS:
        return train.train(params, paths)
    shutil.copytree(handed_over("models", "train"), paths.models)
    take_store(paths.root)
    card: dict = json.loads(paths.model_card.read_text())
    if card["data_sha256"] != data.load_fingerprint(paths)["sha256"]:
        raise pytest.UsageError(
            "TESTS_REUSE_OUTPUTS=1 but models/ was trained on other data than data/ holds: "
            "run `make data train` again"
        )
    return card


@pytest.fixture(scope="session")
def evaluated(paths: Paths, params, trained) -> EvaluationReport:
    """`make evaluate`: the evaluation report."""
    from {{ cookiecutter.package }} import evaluate

    if not REUSE_OUTPUTS:
        return evaluate.evaluate(params, paths)
    handed_over("reports/evaluation.json", "evaluate")
    shutil.copytree(PROJECT_ROOT / "reports", paths.reports, dirs_exist_ok=True)
    report = EvaluationReport.read(paths.evaluation_report)
    if report.model_version != trained["model_version"]:
        raise pytest.UsageError(
            f"TESTS_REUSE_OUTPUTS=1 but reports/evaluation.json is of model version "
            f"{report.model_version}, models/ of {trained['model_version']}: run `make evaluate`"
        )
    return report


@pytest.fixture(scope="session")
def model(paths: Paths, trained):
    from {{ cookiecutter.package }}.model import Model

    return Model.load(paths.model_file, paths.model_card)


@pytest.fixture(scope="session")
def bento(paths: Paths, params, evaluated) -> dict:
    """`make package`: the built bento and its exported archive."""
    from {{ cookiecutter.package }} import package

    if not REUSE_OUTPUTS:
        return package.build(params, paths)
    built = json.loads(handed_over("dist/bento.json", "package").read_text())
    shutil.copytree(PROJECT_ROOT / "dist", paths.dist)
    archive = paths.dist / Path(built["archive"]).name
    if not archive.exists() or built["model_version"] != evaluated.model_version:
        raise pytest.UsageError(
            f"TESTS_REUSE_OUTPUTS=1 but dist/ holds no archive of {built['tag']} built from "
            f"model version {evaluated.model_version}: run `make package`"
        )
    package.import_archives(paths)
    built["archive"] = str(archive)
    (paths.dist / "bento.json").write_text(json.dumps(built, indent=2) + "\n")
    # Released, as `make package` releases it: CI hands over the train job's store, which
    # the package job released the bento to only in its own copy.
    package.publish(params, paths)
    return built


def _locked_pins(group: str, lock_file: Path = PROJECT_ROOT / "uv.lock") -> dict[str, str]:
    """name -> version of dependency group `group` and everything it pulls in, read from
    uv.lock for this interpreter: what the bento must pin, found without `uv export`."""
    from packaging.markers import Marker

    packages = tomllib.loads(lock_file.read_text())["package"]
    [project] = [p for p in packages if p.get("source", {}).get("editable") == "."]
    pins: dict[str, str] = {}
    seen: set[tuple[str, str, str]] = set()
    wanted = list(project["dev-dependencies"][group])
    while wanted:
        dependency = wanted.pop()
        if "marker" in dependency and not Marker(dependency["marker"]).evaluate():
            continue
        [package] = [
            p
            for p in packages
            if p["name"] == dependency["name"]
            and dependency.get("version", p["version"]) == p["version"]
        ]
        name, version = package["name"], package["version"]
        assert pins.setdefault(name, version) == version, f"{name}: two versions locked"
        # A dependency with extras (uvicorn[standard]) pulls in those extras' packages too.
        for extra in ("", *dependency.get("extra", ())):
            if (name, version, extra) in seen:
                continue
            seen.add((name, version, extra))
            if extra:
                wanted += package.get("optional-dependencies", {}).get(extra, [])
            else:
                wanted += package.get("dependencies", [])
    return pins


@pytest.fixture(scope="session")
def locked_pins():
    """`locked_pins(group)`: name -> version of a dependency group's closure in uv.lock."""
    return _locked_pins


@pytest.fixture(scope="session")
def job_root(paths: Paths):
    """`job_root(folder)`: `folder` as another CI job gets it (this session's data, model
    and reports, no bento yet), as a project root."""

    def copy(folder: Path) -> Paths:
        for outputs in (paths.models, paths.reports, paths.raw_dir.parent):
            shutil.copytree(outputs, folder / outputs.name, dirs_exist_ok=True)
        return Paths(folder)

    return copy


@pytest.fixture(scope="session")
def server(paths: Paths, bento):
    """The bento served by `bentoml serve` on a free port of 127.0.0.1."""
    from {{ cookiecutter.package }} import serving

    with serving.running_server(paths, bento["tag"]) as url:
        yield url


def write_stand_in_tools(folder: Path) -> Path:
    """Stand-in `bentoml`, `docker` and `kubectl` in `folder`, for the kubernetes target.

    Each appends its argv to folder/calls.log and exits 0, or prints "error: it failed"
    and exits 1 once when a file `fail-<tool>-<first argument>` exists; it prints the file
    `answer-<tool>-<first argument>` when there is one. Returns the log.
    `docker image inspect <repository>:<tag>` also prints the image's JSON, whose
    RepoDigests has `<repository>@sha256:<digest>`: the fake digest is the tag's bytes in
    hex, zero-padded to 64 characters (`tag.encode().hex().ljust(64, "0")`).
    """
    log = folder / "calls.log"
    answers = {
        "docker": (
            'if [ "$1 $2" = "image inspect" ]; then\n'
            '  hex=$(printf %s "${3##*:}" | od -An -tx1 | tr -d " \\n")\n'
            '  digest=$(printf "%s%064d" "$hex" 0 | cut -c1-64)\n'
            '  printf \'[{"RepoTags": ["%s"], "RepoDigests": ["%s@sha256:%s"]}]\\n\' \\\n'
            '    "$3" "${3%:*}" "$digest"\n'
            "fi\n"
        ),
    }
    for tool in ("bentoml", "docker", "kubectl"):
        script = folder / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{log}"\n'
            f'marker="{folder}/fail-{tool}-$1"\n'
            'if [ -f "$marker" ]; then rm "$marker"; echo "error: it failed" >&2; exit 1; fi\n'
            f'answer="{folder}/answer-{tool}-$1"\n'
            'if [ -f "$answer" ]; then cat "$answer"; fi\n' + answers.get(tool, "")
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


@pytest.fixture(scope="session")
def stand_in_tools():
    """`write_stand_in_tools`, for fixtures of any scope."""
    return write_stand_in_tools


@contextmanager
def switched_stores(paths: Paths) -> Iterator[Paths]:
    """Point PROJECT_ROOT and MLflow at another project root, then restore them."""
    saved = {name: os.environ.get(name) for name in SWITCHED}
    os.environ["PROJECT_ROOT"] = str(paths.root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{seed_store(paths.root)}"
    try:
        yield paths
    finally:
        # mlflow.set_tracking_uri also writes the environment, so restore it afterwards.
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_TRACKING_URI"])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def stores_of():
    """`stores_of(paths)`: a context in which the stages use another project root's stores
    (for tests that register, alias or retrain models away from the session's store)."""
    return switched_stores
