"""The host target's file schema and the files it writes on the host (no server started)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from {{ cookiecutter.package }} import monitor
from {{ cookiecutter.package }}.config import MonitoringParams, Paths
from {{ cookiecutter.package }}.deploy import environments, host

VALID = {
    "name": "production",
    "requires": None,
    "promotion": "manual",
    "gates": {"latency_p99_ms": 500, "min_rps": 1, "load_test": {"users": 1, "seconds": 1}},
    "deploy": {
        "target": "host",
        "runner": ["self-hosted", "ml-production"],
        "port": 8080,
        "url": "https://churn.example.com/",
        "state_dir": "/srv/churn-model/production",
    },
}


def write(tmp_path, document: dict):
    file = tmp_path / "production.yaml"
    file.write_text(yaml.safe_dump(document))
    return file


def test_a_host_environment_loads_with_its_url_port_and_folder(tmp_path):
    environment = environments.load(write(tmp_path, VALID))
    assert environment.url == "https://churn.example.com"
    assert environment.port == 8080
    assert environment.deploy.address == "127.0.0.1"
    socket = host.layout(environment).socket
    assert socket.as_posix() == "/srv/churn-model/production/supervisor.sock"
    assert host.front(environment) == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("runner", [], "field deploy.runner: List should have at least 1 item"),
        ("runner", ["ml prod"], "field deploy.runner.0: String should match pattern"),
        ("state_dir", "relative/folder", "field deploy.state_dir: String should match pattern"),
        ("state_dir", "/srv/a folder", "field deploy.state_dir: String should match pattern"),
        ("url", "churn.example.com", "field deploy.url: String should match pattern"),
    ],
)
def test_a_bad_host_field_is_refused_by_name(tmp_path, field, value, message):
    document = {**VALID, "deploy": {**VALID["deploy"], field: value}}
    with pytest.raises(ValueError, match=message):
        environments.load(write(tmp_path, document))


def test_a_state_folder_too_long_for_supervisors_socket_is_refused(tmp_path):
    document = {**VALID, "deploy": {**VALID["deploy"], "state_dir": "/srv/" + "x" * 100}}
    with pytest.raises(ValueError, match="too long for supervisor's socket"):
        host.layout(environments.load(write(tmp_path, document)))


def test_nginx_listens_where_the_file_says_and_passes_bodies_to_the_service(tmp_path):
    document = {**VALID, "deploy": {**VALID["deploy"], "address": "0.0.0.0"}}
    environment = environments.load(write(tmp_path, document))
    where = host.Layout(tmp_path / "state")
    conf = host._nginx_conf(where, environment)
    assert "listen 0.0.0.0:8080;" in conf
    assert f"include {where.upstream};" in conf
    # The service's own 413 applies, not nginx's 1 MB default.
    assert "client_max_body_size 0;" in conf
    assert host.front(environment) == "http://127.0.0.1:8080"


def test_the_upstream_names_the_live_colour_or_nothing(tmp_path):
    where = host.Layout(tmp_path)
    host._point_at(where, 41234)
    assert "server 127.0.0.1:41234;" in where.upstream.read_text()
    host._point_at(where, None)
    assert " down;" in where.upstream.read_text()


def test_a_bento_program_restarts_on_crash_and_stops_with_its_workers(tmp_path):
    where = host.Layout(tmp_path)
    text = host._program(where, "blue", ["python", "-m", "bentoml", "serve", "x:y"], {"A": "1"})
    assert "autorestart=true" in text
    assert "stopasgroup=true" in text and "killasgroup=true" in text
    assert 'environment=A="1"' in text


def test_monitor_reads_a_hosts_log_in_its_state_folder_and_a_local_ones_in_its_own(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("MONITORING_PATH", raising=False)
    (tmp_path / "environments").mkdir()
    write(tmp_path / "environments", VALID)
    local = {
        **VALID,
        "name": "test",
        "promotion": "auto",
        "deploy": {"target": "local", "port": 3001},
    }
    (tmp_path / "environments" / "test.yaml").write_text(yaml.safe_dump(local))
    params = SimpleNamespace(monitoring=MonitoringParams())

    def folder(env):
        return monitor.log_folder(params, Paths(tmp_path), env)

    assert folder("production") == Path(VALID["deploy"]["state_dir"]) / "monitoring"
    assert folder("test") == tmp_path / "monitoring" / "test"
    assert folder(None) == tmp_path / "monitoring"
    # Late labels live beside a host's log, where its scheduled monitor job reads them.
    state_dir = Path(VALID["deploy"]["state_dir"])
    labels = monitor.feedback_store(Paths(tmp_path), "production")
    assert labels == state_dir / "feedback" / "labels.parquet"
    assert monitor.feedback_store(Paths(tmp_path), "test") == Paths(tmp_path).feedback
    monkeypatch.setenv("MONITORING_PATH", str(tmp_path / "elsewhere"))
    assert folder("test") == tmp_path / "elsewhere" / "test"
