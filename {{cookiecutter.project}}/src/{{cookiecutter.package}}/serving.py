"""Serving a bento: `bentoml serve` on 127.0.0.1, started, checked ready, stopped.

A process runs in its own session (process group), so it outlives the command that
started it and `stop` ends it with all its workers. `.state/<name>.json` says which
process serves a name (an environment of the local target, or its candidate).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeGuard

import httpx
import psutil

from .config import Paths, load_params

READY_TIMEOUT = 180.0
# A server this command starts for itself (a smoke test, the service check) and stops.
PASSING_READY_TIMEOUT = 120.0
# BentoML's line when the service's setup raised; it then restarts the worker every few
# seconds rather than exit, so only the log tells that waiting is pointless.
STARTUP_FAILED = "Application startup failed"
# What `bentoml serve` logs when another program bound its port first.
ADDRESS_IN_USE = "Address already in use"
STOP_TIMEOUT = 15.0
# Between looks at a starting or stopping server: each tenth of a second waited past the
# moment it is ready (or gone) is added to every deploy's switch.
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    bento: str
    log: str
    started_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def serve_command(bento: str, port: int, python: str = sys.executable) -> list[str]:
    return [
        python, "-m", "bentoml", "serve", bento,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


def state_file(paths: Paths, environment: str) -> Path:
    return paths.state / f"{environment}.json"


def read_state(paths: Paths, environment: str) -> Server | None:
    """The process recorded as serving `environment`, if any."""
    file = state_file(paths, environment)
    if not file.exists():
        return None
    try:
        return Server(**json.loads(file.read_text()))
    except (json.JSONDecodeError, TypeError):
        return None


def write_state(paths: Paths, environment: str, server: Server) -> None:
    """Replace the state atomically: an interruption leaves the old file or the new one."""
    file = state_file(paths, environment)
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_suffix(".json.tmp")
    partial.write_text(json.dumps(asdict(server), indent=2) + "\n")
    partial.replace(file)


def clear_state(paths: Paths, environment: str) -> None:
    state_file(paths, environment).unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:<port>."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    # Reap it first if it is our own child; a zombie (exited, its parent has not reaped
    # it yet, as some containers' init never does) counts as gone.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def running(server: Server) -> bool:
    """Whether the server's `bentoml serve` still runs: its pid alive and still its own. A
    state file outlives its process, and pids are reused (32,768 of them on many Linux
    hosts): another program with that pid is not the server."""
    return _serve_process(server) is not None


def _serve_process(server: Server) -> psutil.Process | None:
    return _own(server, server.pid) if alive(server.pid) else None


def _own(server: Server, pid: int) -> psutil.Process | None:
    """Process `pid` if it is one of the server's: it runs with the server's own BentoML
    home (`own_home`), which nothing else does."""
    with contextlib.suppress(psutil.Error):
        process = psutil.Process(pid)
        if process.environ().get("BENTOML_HOME") == str(_home_of(Path(server.log))):
            return process
    return None


@functools.cache
def _probe_client() -> httpx.Client:
    # One per process: a client per request loaded the CA bundle each time (~60 ms of CPU,
    # and readiness is polled every 50 ms). No kept-alive connection: each probe opens its
    # own, so it sees whatever listens on the port now.
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def readyz(url: str, timeout: float = 3) -> int:
    """The status `url`/readyz answers with; httpx.HTTPError when nothing answers."""
    return _probe_client().get(f"{url}/readyz", timeout=timeout).status_code


class PortTaken(RuntimeError):
    """Another program holds the port a server was to listen on."""


def healthy(server: Server | None) -> TypeGuard[Server]:
    """The server runs, answers /readyz, and is what listens on its port: an answer from
    another program that took the port (another server, say, given the same free port)
    is not this server's."""
    if server is None or not running(server):
        return False
    try:
        return readyz(server.url) == 200 and _listens(server)
    except httpx.HTTPError:
        return False


def _listens(server: Server) -> bool:
    """Whether the server's `bentoml serve` (which binds the port) or a process it started
    listens on the server's port. Asked of those processes alone: a machine-wide scan of
    connections needs root on macOS."""
    if (serve := _serve_process(server)) is None:
        return False
    for process in {serve, *_descendants(serve)}:
        with contextlib.suppress(psutil.Error):
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == server.port
                for c in process.net_connections("tcp")
            ):
                return True
    return False


def _tail(log: str) -> str:
    path = Path(log)
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"


def log_file(paths: Paths, label: str, port: int) -> Path:
    return paths.state / "logs" / f"{label}-{port}.log"


def _home_of(log: Path) -> Path:
    """The BentoML home of the server writing `log` (see `own_home`)."""
    return log.parent.parent / "homes" / log.stem


def own_home(store: Path, home: Path) -> Path:
    """`home` as one server's BentoML home: the bentos and models of the home `store`,
    linked in, and its own prometheus_multiproc_dir. `bentoml serve` empties
    $BENTOML_HOME/prometheus_multiproc_dir as it starts, so servers sharing a home (the
    local environments, a candidate beside the serving bento) would wipe each other's
    /metrics counters."""
    home.mkdir(parents=True, exist_ok=True)
    for folder in ("bentos", "models"):
        (store / folder).mkdir(parents=True, exist_ok=True)
        link = home / folder
        link.unlink(missing_ok=True)
        link.symlink_to((store / folder).resolve(), target_is_directory=True)
    return home


def start(
    paths: Paths,
    bento: str,
    port: int,
    label: str,
    *,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    timeout: float = READY_TIMEOUT,
    record_as: str | None = None,
) -> Server:
    """Start `bentoml serve` detached on `port`; return once it answers /readyz.

    `python` and `env` let the infra check serve from another virtual environment.
    `record_as` names the state file written as soon as the process exists, before it is
    ready: a deploy killed while it waits leaves a server that `down` can still find. It
    also names the server's prediction log folder, so environments (and their candidates'
    checks) never mix their traffic.
    """
    if listening(port):
        raise PortTaken(f"port {port} on 127.0.0.1 is already in use: cannot serve {label}")
    log = log_file(paths, label, port)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = env or _serving_env(paths, record_as)
    home = own_home(Path(env["BENTOML_HOME"]), _home_of(log))
    with open(log, "wb") as output:
        process = subprocess.Popen(
            serve_command(bento, port, python),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log.parent,
            env={**env, "BENTOML_HOME": str(home)},
            start_new_session=True,
        )
    server = Server(process.pid, port, bento, str(log), time.time())
    try:
        if record_as is not None:
            write_state(paths, record_as, server)
        wait_ready(server, process, timeout)
    except BaseException:
        stop(server)
        if record_as is not None:
            clear_state(paths, record_as)
        raise
    return server


def _serving_env(paths: Paths, record_as: str | None) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": str(paths.bentoml_home)}
    if record_as is not None:
        monitoring = load_params(paths.params).monitoring
        env["MONITORING_PATH"] = str(paths.monitoring_log(monitoring, record_as).resolve())
    return env


def error_cause(log: str) -> str:
    """What broke, from a server log: a missing module first, else the last error line."""
    # BentoML wraps import failures in its own message; the module name is what matters.
    if missing := re.search(r"No module named '([^']+)'", log):
        return f"ModuleNotFoundError: No module named '{missing.group(1)}'"
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b.*:", line)]
    return errors[-1] if errors else (lines[-1] if lines else "(no output)")


def _log_text(server: Server) -> str:
    path = Path(server.log)
    return path.read_text(errors="replace") if path.exists() else ""


def wait_ready(server: Server, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once the server answers; fail at once, in one line, if it exits or its
    service fails to start (the log keeps the whole traceback)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = _log_text(server)
            failure = PortTaken if ADDRESS_IN_USE in log else RuntimeError
            raise failure(
                f"bentoml serve {server.bento} exited with code {process.returncode} before "
                f"it was ready: {error_cause(log)} (log: {server.log})"
            )
        if STARTUP_FAILED in (log := _log_text(server)):
            raise RuntimeError(
                f"bentoml serve {server.bento} failed to start: {error_cause(log)} "
                f"(log: {server.log})"
            )
        # Connecting costs far less than a /readyz request: ask only once the port listens.
        if listening(server.port) and healthy(server):
            return
        time.sleep(POLL_SECONDS)
    raise TimeoutError(
        f"bentoml serve {server.bento} not ready at {server.url} after {timeout:.0f}s:\n"
        + _tail(server.log)
    )


def stop(server: Server | None) -> None:
    """End the server's whole process group; wait until its port is free.

    BentoML's workers run in sessions of their own: when `bentoml serve` dies before
    them (killed, or stopped while still starting them) they keep the port. So each
    round also signals the processes the server started and the BentoML processes that
    still listen on its port. Only the server's own (`_own`): a stale state file's pid or
    port may by now belong to another program, or to another project's server.
    """
    if server is None:
        return
    serve = _serve_process(server)
    signalled = _descendants(serve)
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        if serve is not None and serve.is_running():  # is_running: still that process
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.pid, sig)
        signalled |= _descendants(serve) | _own_listeners(server)
        for process in signalled:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)  # psutil checks it is still that process
        watched, deadline = {serve, *signalled}, time.monotonic() + grace
        while _left(server, watched):
            if time.monotonic() >= deadline:
                break  # to the next, harder signal
            time.sleep(POLL_SECONDS)
        else:  # all gone
            shutil.rmtree(_home_of(Path(server.log)), ignore_errors=True)
            return


def _left(server: Server, signalled: set[psutil.Process | None]) -> bool:
    """Whether a signalled process is still up, or the server's port still held by one of
    its own. Each process must be gone, not only unseen on the port: an exiting worker's
    environment (what tells it is the server's) is unreadable a moment before its socket
    closes, and the port still took connections."""
    return any(map(_up, signalled)) or _serving(server)


def _up(process: psutil.Process | None) -> bool:
    return process is not None and process.is_running() and alive(process.pid)


def _serving(server: Server) -> bool:
    """Whether the server's port is still held by one of its own processes (the cheap
    connect first: it is free once the server is gone)."""
    return listening(server.port) and bool(_own_listeners(server))


def _descendants(process: psutil.Process | None) -> set[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        if process is not None and process.is_running():
            return set(process.children(recursive=True))
    return set()


def _own_listeners(server: Server) -> set[psutil.Process]:
    """The server's own processes listening on its port; never another program there."""
    found = set()
    for connection in psutil.net_connections("tcp"):
        if connection.status != psutil.CONN_LISTEN or not connection.pid:
            continue
        if not connection.laddr or connection.laddr.port != server.port:
            continue
        if (process := _own(server, connection.pid)) is not None:
            found.add(process)
    return found


def serve_foreground(bento: str, port: int) -> None:
    """Replace this process with `bentoml serve` (Ctrl-C stops it)."""
    command = serve_command(bento, port)
    os.execv(command[0], command)


def start_on_free_port(
    paths: Paths, bento: str, label: str, attempts: int = 3, **options: Any
) -> Server:
    """`start` on a port the kernel reports free, or on another if a program binds that one
    first: free ports come from the range every program's connections draw from, and
    servers started side by side (parallel test workers, CI jobs on one runner) may be
    handed the same one."""
    for attempt in range(1, attempts + 1):
        try:
            return start(paths, bento, free_port(), label, **options)
        except PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("attempts must be at least 1")


@contextlib.contextmanager
def running_server(
    paths: Paths, bento_tag: str, port: int | None = None, timeout: float = PASSING_READY_TIMEOUT
) -> Iterator[str]:
    """Serve the bento on 127.0.0.1 in a subprocess; yield its base URL; always stop it."""
    server = (
        start(paths, bento_tag, port, "serve", timeout=timeout)
        if port
        else start_on_free_port(paths, bento_tag, "serve", timeout=timeout)
    )
    try:
        yield server.url
    finally:
        stop(server)
