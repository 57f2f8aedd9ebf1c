"""The package stage refuses what should not ship and reports a server that cannot start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from {{ cookiecutter.package }} import package, serving
from {{ cookiecutter.package }}.config import Paths

pytestmark = pytest.mark.integration


@pytest.fixture
def other_root(tmp_path, paths, trained) -> Paths:
    """A project root holding a copy of the trained model, with no evaluation yet."""
    other = Paths(tmp_path)
    other.models.mkdir()
    shutil.copy(paths.model_file, other.model_file)
    shutil.copy(paths.model_card, other.model_card)
    other.reports.mkdir()
    return other


def test_packaging_without_an_evaluation_asks_for_one(params, other_root):
    with pytest.raises(FileNotFoundError, match="run `make evaluate` first"):
        package.build(params, other_root)


def test_packaging_a_model_that_failed_its_gates_is_refused(params, other_root, evaluated):
    evaluated.model_copy(update={"passed": False}).write(other_root.evaluation_report)

    with pytest.raises(RuntimeError, match="failed its gates"):
        package.build(params, other_root)


def test_packaging_with_an_evaluation_of_another_version_is_refused(params, other_root, evaluated):
    evaluated.model_copy(update={"model_version": "not-this-one"}).write(
        other_root.evaluation_report
    )

    with pytest.raises(RuntimeError, match="version not-this-one"):
        package.build(params, other_root)


def test_packaging_with_a_malformed_evaluation_names_the_field(params, other_root, trained):
    report = {"passed": True, "metrics": {}, "model_version": trained["model_version"]}
    other_root.evaluation_report.write_text(json.dumps(report))

    with pytest.raises(ValueError, match=r"is not an evaluation report \(failures: Field required"):
        package.build(params, other_root)


def test_a_server_that_cannot_start_reports_its_output(paths):
    with (
        pytest.raises(RuntimeError, match="exited with code") as caught,
        serving.running_server(paths, "no-such-bento:0", timeout=120),
    ):
        pass

    assert "no-such-bento" in str(caught.value)


def test_a_second_build_in_the_same_process_packs_the_model_saved_for_it(
    params, paths, bento, job_root, tmp_path
):
    import bentoml

    second = package.build(params, job_root(tmp_path))

    assert second["model_tag"] != bento["model_tag"]
    packed = [str(model.tag) for model in bentoml.get(second["tag"]).info.all_models]
    assert packed == [second["model_tag"]]


def test_a_bento_whose_service_fails_to_start_is_reported_at_once_in_one_line(
    params, paths, bento, job_root, tmp_path
):
    import bentoml

    broken = package.build(params, job_root(tmp_path))
    # The packed booster is unreadable: the service raises while it sets up, and BentoML
    # would restart its worker every few seconds until the readiness timeout.
    (Path(bentoml.models.get(broken["model_tag"]).path) / "model.txt").write_text("garbage")

    with (
        pytest.raises(RuntimeError, match="failed to start: ") as caught,
        serving.running_server(paths, broken["tag"]),
    ):
        pass

    message = str(caught.value)
    assert "\n" not in message and "LightGBMError" in message, message
    assert "not ready" not in message  # it did not wait for the timeout


# Answers 200 to any GET, as a server of another project would answer /readyz.
ANSWERS_EVERYTHING = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"not yours")
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_a_free_port_another_program_binds_first_is_left_to_it_and_another_one_served(
    paths, bento, monkeypatch
):
    other = subprocess.Popen(
        [sys.executable, "-c", ANSWERS_EVERYTHING], stdout=subprocess.PIPE, text=True
    )
    try:
        taken = int(other.stdout.readline())
        ports = iter([taken, serving.free_port()])
        monkeypatch.setattr(serving, "free_port", lambda: next(ports))
        # The other program binds the port between `start`'s check and `bentoml serve`'s bind.
        first_check = iter([True])
        listening = serving.listening
        monkeypatch.setattr(
            serving, "listening", lambda port: not next(first_check, False) and listening(port)
        )

        server = serving.start_on_free_port(paths, bento["tag"], "serve")
        try:
            answer = httpx.post(f"{server.url}/metadata", json={}, timeout=30)
        finally:
            serving.stop(server)

        assert server.port != taken
        assert answer.json()["bento_tag"] == bento["tag"]
        assert httpx.get(f"http://127.0.0.1:{taken}/readyz", timeout=10).text == "not yours"
    finally:
        other.kill()
        other.wait()
