"""A real MLflow release store on 127.0.0.1, as a team runs one: `mlflow server` with its
runs and registry in PostgreSQL and its artifacts in an S3 bucket (moto's server).

The tracking server proxies the artifacts (mlflow-artifacts:/ URIs): only the server holds
the S3 endpoint and credentials, so a client needs nothing but the tracking URI.

    with running_release_store(folder) as store:
        MlflowClient(store.uri) ...
        store.query("select name from experiments")  # what PostgreSQL holds
        store.objects()                               # what the bucket holds

Every process logs to a file in `folder`; a process that does not come up raises an error
that ends with the tail of its log. The `release_store` fixture serves one store per session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest

HOST = "127.0.0.1"
BUCKET = "releases"
PREFIX = "mlflow"
# moto accepts any credentials; they are given to the MLflow server and our S3 client only.
CREDENTIALS = {"aws_access_key_id": "release-store", "aws_secret_access_key": "release-store"}
REGION = "us-east-1"
# PostgreSQL refuses to run as root; the Debian package creates this system user.
PG_USER = "postgres"
START_TIMEOUT = 120
# Nothing may reach the network: MLflow telemetry off, no server-side job runner (it would
# also start extra processes and leave a folder in /dev/shm).
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}
# Loopback connections must not go through a proxy set for the machine.
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ReleaseStore:
    """A running store: where to reach it, and its real contents for assertions."""

    folder: Path
    uri: str  # the MLflow tracking (and registry) URI
    postgres_dsn: str
    s3_endpoint: str
    bucket: str = BUCKET
    s3_prefix: str = PREFIX
    # Process ids, for checks that nothing is left: "postgres" (the postmaster), "moto" and
    # "mlflow" (each the leader of its own process group).
    pids: dict[str, int] = field(default_factory=dict)
    # Stopped in reverse order of starting; emptied by stop().
    _stops: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def s3(self) -> Any:  # boto3 has no type information
        """A boto3 S3 client on the store's bucket server (moto)."""
        return boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=REGION, **CREDENTIALS)

    def objects(self) -> list[str]:
        """Every object key in the bucket, sorted."""
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        """The bytes of one object in the bucket."""
        body: bytes = self.s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """The rows of one SQL query on the MLflow database."""
        connection = psycopg2.connect(self.postgres_dsn)
        with contextlib.closing(connection), connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def stop(self) -> None:
        """Stop MLflow, moto, then PostgreSQL. Idempotent."""
        while self._stops:
            self._stops.pop()()


@contextlib.contextmanager
def running_release_store(folder: Path) -> Iterator[ReleaseStore]:
    """A started store in `folder`, stopped on exit."""
    store = start_release_store(folder)
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture(scope="session")
def release_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseStore]:
    """One store for the test session. A test module uses it by importing it:
    `from release_store import release_store` (pytest finds fixtures among its names)."""
    folder = tmp_path_factory.mktemp("release-store")
    with pytest.MonkeyPatch.context() as patch, running_release_store(folder) as store:
        # The tests' own MLflow clients: no telemetry either (MLflow reads this at each call).
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield store


def start_release_store(folder: Path) -> ReleaseStore:
    """Start PostgreSQL, the S3 server and the MLflow server; stop what started on failure."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    store = ReleaseStore(folder, uri="", postgres_dsn="", s3_endpoint="")
    try:
        store.postgres_dsn = start_postgres(store)
        store.s3_endpoint = start_s3(store)
        store.uri = start_mlflow(store)
    except BaseException:
        store.stop()
        raise
    return store


def deploys(store: ReleaseStore, project: str = "churn-model") -> list[tuple[str, str, str, str]]:
    """(environment, action, bento, run status) of every deploy attempt `project`'s CD
    recorded in `store`, oldest first."""
    from mlflow import MlflowClient  # slow to import: only where a test reads the records

    client = MlflowClient(store.uri)
    experiment = client.get_experiment_by_name(f"{project}-deployments")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    runs.sort(key=lambda run: run.data.tags["time"])
    return [
        (tags["environment"], tags["action"], tags["bento"], run.info.status)
        for run, tags in ((run, run.data.tags) for run in runs)
    ]


# PostgreSQL ---------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The folder with initdb/pg_ctl/postgres: the highest /usr/lib/postgresql/<v>/bin, else
    `pg_config --bindir` (Debian puts the server binaries outside PATH)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1].parent
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if (Path(bindir.stdout.strip()) / "initdb").exists():
            return Path(bindir.stdout.strip())
    raise RuntimeError(
        "PostgreSQL server not found (no initdb): apt-get install postgresql (Debian package)"
    )


def postgres_home(store: ReleaseStore) -> tuple[Path, list[str]]:
    """Where the cluster lives, and the command prefix running PostgreSQL as a user it accepts.

    Not root: folder/postgres, run as ourselves. Root (CI): PostgreSQL refuses to run as root,
    so it runs as the postgres system user, and that user cannot reach `folder` (pytest keeps
    /tmp/pytest-of-root at 0700 and resets it at every session start). The cluster then lives
    in a folder of its own under /tmp, linked as folder/postgres and removed by stop().
    """
    if os.geteuid() != 0:
        home = store.folder / "postgres"
        home.mkdir()
        return home, []
    home = Path(tempfile.mkdtemp(prefix="release-store-postgres-"))
    store._stops.append(lambda: shutil.rmtree(home, ignore_errors=True))
    shutil.chown(home, PG_USER, PG_USER)
    (store.folder / "postgres").symlink_to(home)
    return home, ["runuser", "-u", PG_USER, "--"]


def start_postgres(store: ReleaseStore) -> str:
    """A fresh cluster on a free port, with database mlflow; returns its DSN."""
    tools, (home, prefix) = postgres_bin(), postgres_home(store)
    data, sockets, port = home / "data", home / "socket", free_port()
    # We open the log, so the server (which inherits it from pg_ctl) needs no access to it.
    log = store.folder / "postgres.log"

    def pg(*command: object) -> None:
        run([*prefix, *command], log, cwd=home)

    # Trust auth: only this machine's loopback and our own socket folder can connect.
    settings = ("-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
    pg(tools / "initdb", "-D", data, *settings)
    pg("mkdir", sockets)
    # fsync off: a throwaway cluster, no need to wait for the disk.
    options = f"-h {HOST} -p {port} -k {sockets} -c fsync=off"
    pg(tools / "pg_ctl", "start", "-D", data, "-o", options, "-s", "-w", "-t", START_TIMEOUT)
    # Fast: disconnect clients (MLflow is stopped first anyway) and shut down cleanly.
    store._stops.append(lambda: pg(tools / "pg_ctl", "stop", "-D", data, "-m", "fast", "-s"))
    store.pids["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
    admin = f"postgresql://{PG_USER}@{HOST}:{port}/postgres"
    wait_until(lambda: connect(admin), "PostgreSQL", log)
    with contextlib.closing(psycopg2.connect(admin)) as connection:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        connection.cursor().execute("CREATE DATABASE mlflow")
    return f"postgresql://{PG_USER}@{HOST}:{port}/mlflow"


def connect(dsn: str) -> bool:
    """Whether PostgreSQL accepts a connection."""
    try:
        psycopg2.connect(dsn, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


# S3 (moto) and MLflow -----------------------------------------------------------------------


def start_s3(store: ReleaseStore) -> str:
    """moto's S3 server on a free port, with the bucket; returns its endpoint URL."""
    port, log = free_port(), store.folder / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
    process = spawn(store, "moto", command, log, dict(os.environ))
    endpoint = f"http://{HOST}:{port}"
    wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), "moto S3 server", log, process)
    boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS).create_bucket(
        Bucket=BUCKET
    )
    return endpoint


def start_mlflow(store: ReleaseStore) -> str:
    """`mlflow server` on PostgreSQL, proxying artifacts to the bucket; returns its URI."""
    port, log = free_port(), store.folder / "mlflow.log"
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        # SQLAlchemy 2.1 reads postgresql:// as psycopg (3): name the driver installed.
        *("--backend-store-uri", store.postgres_dsn.replace("postgresql:", "postgresql+psycopg2:")),
        *("--artifacts-destination", f"s3://{store.bucket}/{store.s3_prefix}"),
        *("--host", HOST, "--port", str(port), "--workers", "1"),
        # Host-header check (DNS rebinding guard): name the only hosts clients use.
        *("--allowed-hosts", f"{HOST}:{port},localhost:{port}"),
    ]
    # The S3 endpoint and credentials live in the server's environment only.
    env = {**os.environ, **QUIET_ENV, "MLFLOW_S3_ENDPOINT_URL": store.s3_endpoint}
    env.update(AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"], AWS_DEFAULT_REGION=REGION)
    env.update(AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"])
    env.pop("MLFLOW_TRACKING_URI", None)
    process = spawn(store, "mlflow", command, log, env)
    uri = f"http://{HOST}:{port}"
    wait_until(lambda: http_ok(f"{uri}/health"), "MLflow server", log, process)
    return uri


def spawn(
    store: ReleaseStore, name: str, command: Sequence[str | Path], log: Path, env: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group, stopped with the store."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    store.pids[name] = process.pid
    store._stops.append(lambda: stop_group(process))
    return process


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server and its children (`mlflow server` runs uvicorn as a child): SIGTERM to
    the whole group, SIGKILL what is still there after a grace period."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reaps the leader, so it stops counting as alive
            if not group_members(process.pid):
                return
            time.sleep(0.1)


# Helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((HOST, port)) == 0


def process_states() -> dict[int, tuple[str, int]]:
    """pid -> (state, process group) of every process, from /proc (Linux)."""
    states = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name, in parentheses, may hold spaces: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            states[int(stat.parent.name)] = (fields[0], int(fields[2]))
    return states


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, exited but not reaped, does not)."""
    state = process_states().get(pid)
    return state is not None and state[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group."""
    return [
        pid for pid, (state, group) in process_states().items() if group == pgid and state != "Z"
    ]


def http_ok(url: str) -> bool:
    """Whether GET url answers 200."""
    try:
        with NO_PROXY.open(url, timeout=2) as response:
            ok: bool = response.status == 200
            return ok
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool], name: str, log: Path, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll until ready(); fail at START_TIMEOUT, or as soon as the server process exits,
    with the end of its log."""
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}).\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready after {START_TIMEOUT}s.\n{tail(log)}")
        time.sleep(0.2)


def run(command: Sequence[object], log: Path, cwd: Path | None = None) -> None:
    """Run a command to completion, its output appended to log; raise with the log's tail."""
    args = [str(part) for part in command]
    with log.open("ab") as out:
        done = subprocess.run(args, stdout=out, stderr=out, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}).\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    """The last lines of a log file, headed by its path."""
    text = log.read_text(errors="replace") if log.exists() else "(no log)"
    return f"--- last lines of {log}:\n" + "\n".join(text.splitlines()[-lines:])
