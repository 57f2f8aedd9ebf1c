"""The bento served over HTTP answers exactly like the model loaded in process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from {{ cookiecutter.package }} import features, smoke

pytestmark = pytest.mark.integration
# What `bentoml serve` runs in its arbiter process: the service module, imported only for
# the service's definition. The model's libraries belong in the worker that predicts.
DEFINITION_ONLY = (
    "import sys, {{ cookiecutter.package }}.service; "
    "print(sorted(m for m in ('lightgbm', 'pandas', 'sklearn') if m in sys.modules))"
)


@pytest.fixture(scope="module")
def held_out(params, raw_data):
    """Rows the model never saw, at most one request's worth."""
    return features.split(raw_data, params)[1].head(params.serving.max_batch_size)


def test_the_smoke_check_finds_the_served_bento_agrees_with_the_model(
    params, paths, raw_data, server, bento
):
    result = smoke.smoke(params, paths, server)

    assert result.passed, result
    assert result.rows == len(features.split(raw_data, params)[1])
    assert result.max_abs_diff <= 1e-9
    assert result.serving == bento["tag"]
    assert result.url == server.rstrip("/")


def test_predictions_over_http_equal_the_in_process_predictions(server, model, held_out):
    records = smoke.to_records(held_out, model.spec.names)

    response = httpx.post(f"{server}/predict", json={"records": records}, timeout=60)

    assert response.status_code == 200, response.text
    served, local = response.json(), model.predict(held_out)
    assert served.keys() == local.keys()
    if "probabilities" in local:
        assert served["predictions"] == local["predictions"]
        np.testing.assert_allclose(
            served["probabilities"], local["probabilities"], rtol=0, atol=1e-9
        )
    else:
        np.testing.assert_allclose(served["predictions"], local["predictions"], rtol=0, atol=1e-9)


def test_a_single_record_gets_a_single_prediction(server, model, held_out):
    record = smoke.to_records(held_out.head(1), model.spec.names)

    response = httpx.post(f"{server}/predict", json={"records": record}, timeout=30)

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 1


def test_metadata_reports_the_model_version_and_the_bento_being_served(
    server, bento, trained, evaluated
):
    response = httpx.post(f"{server}/metadata", json={}, timeout=30)

    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["model_version"] == str(trained["model_version"])
    assert metadata["bento_tag"] == bento["tag"]
    assert metadata["model_tag"] == bento["model_tag"]
    assert metadata["data_sha256"] == trained["data_sha256"]
    assert metadata["git_commit"] == trained["git_commit"]
    assert metadata["metrics"] == evaluated.metrics


@pytest.mark.parametrize("endpoint", ["/readyz", "/livez", "/healthz", "/metrics"])
def test_bentoml_built_in_endpoints_answer(server, endpoint):
    assert httpx.get(f"{server}{endpoint}", timeout=30).status_code == 200


def test_metrics_count_prediction_requests(server, model, held_out):
    records = smoke.to_records(held_out.head(1), model.spec.names)
    httpx.post(f"{server}/predict", json={"records": records}, timeout=30)

    metrics = httpx.get(f"{server}/metrics", timeout=30).text

    assert 'endpoint="/predict"' in metrics


def test_the_service_definition_loads_no_model_library(bento):
    done = subprocess.run(
        [sys.executable, "-c", DEFINITION_ONLY], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"


def test_the_served_worker_goes_without_scikit_learn_and_pandas_as_where_it_is_deployed(server):
    # The bento's environment has neither; in the project's venv LightGBM would import both
    # into every worker (service.py). A loaded package maps its extension modules.
    port = int(server.rsplit(":", 1)[1])
    [worker] = [
        psutil.Process(connection.pid)
        for connection in psutil.net_connections("tcp")
        if connection.status == psutil.CONN_LISTEN
        and connection.laddr.port == port
        and "_bentoml_impl.worker" in " ".join(psutil.Process(connection.pid).cmdline())
    ]
    mapped = [Path(region.path).parts for region in worker.memory_maps()]

    assert any("lightgbm" in parts for parts in mapped)  # the model's library: it is there
    assert not any("sklearn" in parts or "pandas" in parts for parts in mapped)
