"""The host target: an environment that lasts on a machine of its own.

The deploy job runs on the host, through a CI runner registered there (the environment
file's `runner` labels), and what it starts outlives the job: the environment's own
supervisord keeps nginx and the serving bento up, restarting either when it crashes.
Everything lives in the file's `state_dir`, never in a job's workspace (the next checkout
wipes that):

  supervisord.conf, supervisor.sock   the environment's supervisor (its venv: supervisor/)
  programs/*.conf                     one program per colour (blue, green) and the proxy
  nginx.conf, live.conf, live.json    nginx on deploy.port, pointed at the live colour
  bentoml/                            the bentos served, with their models (the job's bento
                                      store leaves with the job)
  monitoring/                         the served bento's prediction log (make monitor)
  venvs/<key>/                        each bento's own requirements, shared by equal sets
  logs/

A deploy is blue-green: the idle colour starts the new bento on a free port and is checked
fully there; nginx then points at it with a graceful reload (requests in flight finish on
the old workers, new ones reach the new colour), it is checked again through nginx, and
only then does the old colour stop. Until the switch the live colour never stops serving.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .. import infra, lock
from ..config import Paths
from ..serving import (
    READY_TIMEOUT,
    STARTUP_FAILED,
    STOP_TIMEOUT,
    error_cause,
    free_port,
    listening,
    own_home,
    readyz,
)
from .environments import Environment, HostDeploy

COLOURS = ("blue", "green")
PROXY = "proxy"
# How long nginx's old workers may take to finish requests in flight after a switch.
DRAIN_SECONDS = 20
# The environment supervisord (and so every program it starts) gets from the deploy job.
DAEMON_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
# A Unix socket path longer than this does not fit in sockaddr_un.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Layout:
    """The folders and files of one environment in its `state_dir`."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def programs(self) -> Path:
        return self.root / "programs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def live(self) -> Path:
        return self.root / "live.json"

    @property
    def upstream(self) -> Path:
        return self.root / "live.conf"

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    def program_log(self, program: str) -> Path:
        return self.logs / f"{program}.log"


def _host(environment: Environment) -> HostDeploy:
    if not isinstance(environment.deploy, HostDeploy):
        raise ValueError(f"environments/{environment.name}.yaml: deploy.target is not host")
    return environment.deploy


def layout(environment: Environment) -> Layout:
    root = Path(_host(environment).state_dir).expanduser()
    if len(str(root / "supervisor.sock")) > MAX_SOCKET_PATH:
        raise ValueError(
            f"environments/{environment.name}.yaml: deploy.state_dir {root} is too long for "
            f"supervisor's socket (at most {MAX_SOCKET_PATH - 16} characters)"
        )
    return Layout(root)


def nginx() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(path)),
        None,
    )
    if not found:
        raise FileNotFoundError(
            "nginx is not installed on this host: the host target serves through it "
            "(Debian/Ubuntu: apt-get install nginx-light)"
        )
    return found


# ---------------------------------------------------------------- supervisor


def _ctl(where: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(where.root / "supervisor" / "bin" / "supervisorctl"), "-c", str(where.conf), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _supervisor_conf(where: Layout) -> str:
    return f"""\
; Written by the deploy; supervisord runs the proxy and the bento's colours of one environment.
[unix_http_server]
file={where.socket}
chmod=0700

[supervisord]
logfile={where.logs / "supervisord.log"}
logfile_maxbytes=10MB
pidfile={where.root / "supervisord.pid"}
directory={where.root}
childlogdir={where.logs}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{where.socket}

[include]
files = {where.programs}/*.conf
"""


def supervisor_running(where: Layout) -> bool:
    if not (where.root / "supervisor" / "bin" / "supervisorctl").exists():
        return False
    pid: str = _ctl(where, "pid").stdout
    return pid.strip().isdigit()


def ensure_supervisor(paths: Paths, where: Layout) -> None:
    """Start the environment's supervisord unless it runs (a system service may own it)."""
    for folder in (where.root, where.programs, where.logs):
        folder.mkdir(parents=True, exist_ok=True)
    where.conf.write_text(_supervisor_conf(where))
    if supervisor_running(where):
        return
    venv = where.root / "supervisor"
    if not (venv / "bin" / "supervisord").exists():
        requirements = where.root / "supervisor-requirements.txt"
        # The version uv.lock holds (pyproject.toml's `host` group), like every install.
        requirements.write_text("\n".join(lock.export("host")) + "\n")
        infra.make_venv(paths, venv, requirements)
    # Only what a daemon needs: the job's environment holds its secrets (tokens, the release
    # store's password), which must not live on in supervisord and the bentos it starts; and
    # GitHub's runner ends every process carrying the job's RUNNER_TRACKING_ID.
    env = {k: os.environ[k] for k in DAEMON_VARIABLES if k in os.environ}
    started = subprocess.run(
        [str(venv / "bin" / "supervisord"), "-c", str(where.conf)],
        capture_output=True, text=True, env=env, cwd=where.root, timeout=60,
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(f"supervisord did not start: {started.stderr.strip()}")
    deadline = time.monotonic() + 30
    while not supervisor_running(where):
        if time.monotonic() > deadline:
            raise TimeoutError(f"supervisord did not answer on {where.socket} within 30s")
        time.sleep(0.2)


def _program(where: Layout, name: str, command: list[str], env: dict[str, str]) -> str:
    environment = ",".join(f'{key}="{value}"' for key, value in env.items())
    return f"""\
[program:{name}]
command={" ".join(command)}
directory={where.root}
environment={environment}
autostart=true
; Restart on crash, however often: the environment must keep answering.
autorestart=true
startsecs=1
startretries=1000
stopasgroup=true
killasgroup=true
stopwaitsecs={int(STOP_TIMEOUT)}
redirect_stderr=true
stdout_logfile={where.program_log(name)}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
"""


def _set_program(where: Layout, name: str, text: str | None) -> None:
    """Add, change (restarting it) or remove (stopping it) one supervisor program."""
    file = where.programs / f"{name}.conf"
    if text is None:
        file.unlink(missing_ok=True)
    else:
        file.write_text(text)
    done = _ctl(where, "update")
    if done.returncode != 0:
        raise RuntimeError(f"supervisorctl update failed: {(done.stdout + done.stderr).strip()}")


def _program_pid(where: Layout, name: str) -> int | None:
    found = _ctl(where, "pid", name).stdout.strip()
    return int(found) if found.isdigit() and found != "0" else None


# ---------------------------------------------------------------- proxy


# nginx's own braces make this a plain template: @NAME@ marks what the deploy fills in.
NGINX_CONF = """\
# Written by the deploy: the environment's front door on @LISTEN@.
worker_processes 1;
pid @STATE@/nginx.pid;
error_log @STATE@/logs/nginx-error.log warn;
worker_shutdown_timeout @DRAIN@s;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @STATE@/nginx-temp/body;
    proxy_temp_path @STATE@/nginx-temp/proxy;
    fastcgi_temp_path @STATE@/nginx-temp/fastcgi;
    uwsgi_temp_path @STATE@/nginx-temp/uwsgi;
    scgi_temp_path @STATE@/nginx-temp/scgi;
    upstream bento {
        include @UPSTREAM@;
        keepalive 32;
    }
    server {
        listen @LISTEN@;
        # The service enforces its own body limit (413) while it reads: pass bodies through.
        client_max_body_size 0;
        proxy_request_buffering off;
        location / {
            proxy_pass http://bento;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
        }
    }
}
"""


def _nginx_conf(where: Layout, environment: Environment) -> str:
    filled = {
        "@LISTEN@": f"{_host(environment).address}:{environment.port}",
        "@STATE@": str(where.root),
        "@DRAIN@": str(DRAIN_SECONDS),
        "@UPSTREAM@": str(where.upstream),
    }
    text = NGINX_CONF
    for marker, value in filled.items():
        text = text.replace(marker, value)
    return text


def _write(file: Path, text: str) -> None:
    """Replace `file` atomically: a crash leaves the old content or the new."""
    partial = file.with_name(file.name + ".tmp")
    partial.write_text(text)
    partial.replace(file)


def _point_at(where: Layout, port: int | None) -> None:
    # Nothing live yet: a server marked down, so nginx answers 502 rather than fail to load.
    line = f"server 127.0.0.1:{port};" if port else "server 127.0.0.1:9 down;"
    _write(where.upstream, f"# The live colour; rewritten by each deploy's switch.\n{line}\n")


def ensure_proxy(where: Layout, environment: Environment) -> None:
    """nginx on the environment's port under supervisor, its upstream the live colour."""
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (where.root / "nginx-temp" / name).mkdir(parents=True, exist_ok=True)
    live = read_live(where)
    _point_at(where, live["port"] if live else None)
    conf = where.root / "nginx.conf"
    text = _nginx_conf(where, environment)
    changed = not conf.exists() or conf.read_text() != text
    _write(conf, text)
    command = [nginx(), "-c", str(conf), "-e", str(where.logs / "nginx-error.log"),
               "-g", "'daemon off;'"]  # fmt: skip
    _set_program(where, PROXY, _program(where, PROXY, command, {}))
    if changed or live:
        _reload(where)
    deadline = time.monotonic() + 30
    while not listening(environment.port):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"nginx is not listening on port {environment.port} after 30s: "
                f"{error_cause(_tail(where.program_log(PROXY)))}"
            )
        time.sleep(0.2)


def _workers(master: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                found.add(int(stat.parent.name))
    return found


def _reload(where: Layout) -> None:
    """nginx re-reads its configuration; wait until the workers of the old one are gone."""
    master = _program_pid(where, PROXY)
    if master is None:
        return
    old = _workers(master)
    done = _ctl(where, "signal", "HUP", PROXY)
    if done.returncode != 0:
        raise RuntimeError(f"could not reload nginx: {(done.stdout + done.stderr).strip()}")
    deadline = time.monotonic() + DRAIN_SECONDS + 10
    while old & _workers(master) or not _workers(master) - old:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx's workers did not restart within {DRAIN_SECONDS + 10}s")
        time.sleep(0.1)


# ---------------------------------------------------------------- bentos and colours


def read_live(where: Layout) -> dict[str, Any] | None:
    """{"colour", "bento", "port"} of what serves, if anything."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        found = json.loads(where.live.read_text())
        if isinstance(found, dict) and {"colour", "bento", "port"} <= set(found):
            return found
    return None


def _tail(file: Path) -> str:
    return file.read_text(errors="replace")[-4000:] if file.exists() else ""


def _install_bento(paths: Paths, where: Layout, bento: str) -> Path:
    """Give the bento a venv of its own requirements and import it, with its model, into the
    host's bento store (the job's store and venv leave with the job); return its Python."""
    import bentoml

    source = Path(bentoml.bentos.get(bento).path)
    requirements = infra.requirements_of(source)
    key = hashlib.sha256(f"{sys.version}\n{requirements.read_text()}".encode()).hexdigest()[:16]
    venv = where.root / "venvs" / key
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        infra.make_venv(paths, venv, requirements)
        (venv / ".complete").touch()
    name, version = bento.split(":", 1)
    if not (where.bentoml_home / "bentos" / name / version / "bento.yaml").exists():
        with tempfile.TemporaryDirectory(prefix="bento-export-") as folder:
            # The archive carries the model too; the bento folder alone does not.
            archive = bentoml.export_bento(bento, str(Path(folder) / "bento.bento"))
            done = subprocess.run(
                [str(python), "-m", "bentoml", "import", archive],
                capture_output=True, text=True, timeout=600, env=_serving_env(where),
            )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"importing {bento} on the host failed: {done.stderr.strip()}")
    return python


def _serving_env(where: Layout) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in infra.LEAKY_VARIABLES}
    return {**clean, "BENTOML_HOME": str(where.bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}


# Supervisor runs each colour through this launcher (stdlib only: it runs in the bento's
# venv). BentoML's workers live in sessions of their own, so when `bentoml serve` itself is
# killed they stay behind holding the port, and the restart could never bind it.
LAUNCHER = """\
\"\"\"Start `bentoml serve ... --port N` after ending processes a killed one left on N.\"\"\"
import os, signal, sys
from pathlib import Path

port = int(sys.argv[sys.argv.index("--port") + 1])
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in Path(table).read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
for fd_dir in Path("/proc").glob("[0-9]*/fd"):
    try:
        holds = any(os.readlink(fd) in inodes for fd in fd_dir.iterdir())
        command = (fd_dir.parent / "cmdline").read_bytes()
    except OSError:
        continue
    # Only a BentoML worker of this host's venvs: never another program on the port.
    if holds and command.startswith(sys.argv[1].encode()) and b"_bentoml_impl" in command:
        print(f"ending pid {fd_dir.parent.name}, left on port {port} by a killed start", flush=True)
        os.kill(int(fd_dir.parent.name), signal.SIGKILL)
os.execv(sys.argv[1], sys.argv[1:])
"""


def _start_colour(where: Layout, colour: str, bento: str, python: Path) -> dict[str, Any]:
    port = free_port()
    log = where.program_log(colour)
    log.unlink(missing_ok=True)
    launcher = where.root / "launch_bento.py"
    _write(launcher, LAUNCHER)
    command = [str(python), str(launcher), str(python), "-m", "bentoml", "serve", bento,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {
        # Its own, so starting one colour never empties the other's /metrics counters.
        "BENTOML_HOME": str(own_home(where.bentoml_home, where.root / "homes" / colour)),
        "BENTOML_DO_NOT_TRACK": "true",
        # The prediction log stays on the host, whichever job started the bento.
        "MONITORING_PATH": str(where.root / "monitoring"),
    }
    _set_program(where, colour, _program(where, colour, command, env))
    started = {"colour": colour, "bento": bento, "port": port}
    deadline = time.monotonic() + READY_TIMEOUT
    first = None
    while True:
        # Supervisor restarts a bento that exits: a new pid before it answered is a crash.
        pid = _program_pid(where, colour)
        first = first or pid
        text = _tail(log)
        if STARTUP_FAILED in text or (pid and first and pid != first):
            _set_program(where, colour, None)
            raise RuntimeError(
                f"bento {bento} failed to start in the {colour} colour: "
                f"{error_cause(text)} (log: {log})"
            )
        with contextlib.suppress(httpx.HTTPError):
            if readyz(f"http://127.0.0.1:{port}") == 200:
                return started
        if time.monotonic() > deadline:
            _set_program(where, colour, None)
            raise TimeoutError(
                f"bento {bento} not ready in the {colour} colour after "
                f"{READY_TIMEOUT:.0f}s (log: {log})"
            )
        time.sleep(0.5)


def replace(
    paths: Paths,
    environment: Environment,
    bento: str,
    verify: Callable[[str, bool], dict[str, Any]],
) -> dict[str, Any]:
    """Serve `bento` in `environment` blue-green, only if it passes `verify(url, full)`."""
    where = layout(environment)
    ensure_supervisor(paths, where)
    # Also puts nginx back on the colour live.json names, should a deploy have died between
    # writing it and reloading nginx.
    ensure_proxy(where, environment)
    live = read_live(where)
    idle = COLOURS[1] if live and live["colour"] == COLOURS[0] else COLOURS[0]
    python = _install_bento(paths, where, bento)
    new = _start_colour(where, idle, bento, python)
    try:
        checks = verify(f"http://127.0.0.1:{new['port']}", True)
        _write(where.live, json.dumps(new, indent=2) + "\n")
        _point_at(where, new["port"])
        _reload(where)
        try:
            checks["after_switch"] = verify(front(environment), False)
        except BaseException:
            # Back to the colour that served: it never stopped.
            if live:
                _write(where.live, json.dumps(live, indent=2) + "\n")
            else:
                where.live.unlink(missing_ok=True)
            _point_at(where, live["port"] if live else None)
            _reload(where)
            raise
    except BaseException:
        _set_program(where, idle, None)
        raise
    if live:
        _set_program(where, live["colour"], None)
    return checks


def front(environment: Environment) -> str:
    """Where the deploy job, on the host, reaches the environment's nginx."""
    address = _host(environment).address
    return f"http://{'127.0.0.1' if address in ('0.0.0.0', '::') else address}:{environment.port}"


def serving(environment: Environment) -> str | None:
    """The bento the environment serves, if its front door answers."""
    live = read_live(layout(environment))
    try:
        answered = readyz(front(environment)) == 200
    except httpx.HTTPError:
        answered = False
    return live["bento"] if live and answered else None


def down(environment: Environment) -> bool:
    """Stop the environment's supervisord and everything under it; True if it ran."""
    where = layout(environment)
    if not supervisor_running(where):
        return False
    for name in (*COLOURS, PROXY):
        (where.programs / f"{name}.conf").unlink(missing_ok=True)
    _ctl(where, "shutdown")
    pid_file = where.root / "supervisord.pid"
    deadline = time.monotonic() + STOP_TIMEOUT + 10
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    _end_strays(where)
    where.live.unlink(missing_ok=True)
    return True


def _end_strays(where: Layout) -> None:
    """End bento workers of this host's venvs that outlived their `bentoml serve` (killed)."""
    prefix = str(where.root / "venvs").encode()
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if (process / "cmdline").read_bytes().startswith(prefix):
                os.kill(int(process.name), signal.SIGKILL)
