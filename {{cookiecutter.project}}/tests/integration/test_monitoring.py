"""The loop after deployment, with the real bento over HTTP: what it logs and counts, late
labels joined by request id, and `monitor` on a shifted window of served traffic."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package }} import features, monitor, replay, served_data, serving, smoke
from {{ cookiecutter.package }}.deploy import local
from {{ cookiecutter.package }}.evaluate import compute_metrics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def splits(params, raw_data):
    return features.split(raw_data, params)


def served_log(paths, params, until: str | None = None, folder: Path | None = None):
    """The prediction log (of `folder`, default the one `serve` writes), once it holds
    `until` (the server flushes it twice a second)."""
    return replay.wait_logged(folder or paths.monitoring_log(params.monitoring), until, timeout=10)


def post(server: str, records: list[dict], request_id: str | None = None) -> httpx.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    return httpx.post(f"{server}/predict", json={"records": records}, headers=headers, timeout=60)


def test_a_prediction_returns_its_request_id_and_lands_in_the_log_with_inputs_and_outputs(
    server, paths, params, model, trained, splits
):
    rows = splits[1].head(2)
    records = smoke.to_records(rows, model.spec.names)

    response = post(server, records, "it-logged-1")
    fresh = post(server, records[:1])

    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == "it-logged-1"
    assert len(fresh.headers["X-Request-ID"]) == 32
    logged = served_log(paths, params, until=fresh.headers["X-Request-ID"])
    mine = logged[logged["request_id"] == "it-logged-1"]
    assert mine["row"].tolist() == [0, 1]
    assert mine[model.spec.names].to_dict(orient="records") == records
    assert mine["prediction"].tolist() == response.json()["predictions"]
    assert set(mine["model_version"]) == {str(trained["model_version"])}
    assert (logged["request_id"] == fresh.headers["X-Request-ID"]).sum() == 1


def test_a_refused_request_gets_a_request_id_and_is_not_logged(server, paths, params, model):
    response = post(server, [{"not_a_feature": 1.0}], "it-refused-1")
    valid = {f.name: (f.categories[0] if f.categories else 1.0) for f in model.spec.features}
    post(server, [valid], "it-after-refused-1")

    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "it-refused-1"
    logged = set(served_log(paths, params, until="it-after-refused-1")["request_id"])
    assert "it-after-refused-1" in logged
    assert "it-refused-1" not in logged


def prediction_samples(server: str) -> dict[tuple, float]:
    text = httpx.get(f"{server}/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("prediction_")
        for sample in family.samples
    }


def test_metrics_count_the_predictions_per_class_or_value_bucket(server, model, splits):
    records = smoke.to_records(splits[1].head(20), model.spec.names)
    before = prediction_samples(server)

    predictions = post(server, records).json()["predictions"]

    after = prediction_samples(server)
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    if model.spec.task == "regression":
        count = next(v for (name, _), v in grew.items() if name == "prediction_value_count")
        assert count == len(records)
    else:
        by_class = {
            dict(labels)["class"]: value
            for (name, labels), value in grew.items()
            if name == "prediction_class_total" and value
        }
        assert by_class == {str(c): float(predictions.count(c)) for c in set(predictions)}


def test_monitoring_enabled_false_where_the_bento_runs_logs_and_counts_nothing(
    server, paths, bento, model, splits, tmp_path, monkeypatch
):
    folder = tmp_path / "off"
    monkeypatch.setenv("MONITORING_PATH", str(folder))
    monkeypatch.setenv("MONITORING_ENABLED", "false")
    records = smoke.to_records(splits[1].head(3), model.spec.names)
    post(server, records)
    counted = prediction_samples(server)

    with serving.running_server(paths, bento["tag"]) as url:
        response = post(url, records, "it-off-1")
        samples = prediction_samples(url)
        time.sleep(1.5)  # two flush intervals of a logging server
        # Started beside it from the same store, it left the other server's counts alone
        # (BentoML empties the metrics folder of the home a server starts from).
        assert prediction_samples(server) == counted != {}

    assert response.status_code == 200 and len(response.json()["predictions"]) == 3
    assert samples == {}
    assert served_data.log_files(folder) == []


@pytest.fixture(scope="module")
def shifted_window(server, params, paths, model):
    """A window of held-out rows, every numeric feature +0.5 training std, served over HTTP
    by `replay`; with the labels of those rows, as a client would send them later."""
    rows = replay.shifted(
        params, paths, model.spec, params.monitoring.window_rows, 0.5, params.seed
    )
    labels = replay.send(server, rows, model.spec, prefix="it-shifted")
    return rows, labels


def test_monitor_flags_a_shifted_window_scores_its_labels_and_records_it_in_mlflow(
    paths, params, model, trained, shifted_window, tmp_path, monkeypatch
):
    rows, labels = shifted_window
    target = model.spec.target
    labels_file = tmp_path / "labels.csv"
    labels.to_csv(labels_file, index=False)
    assert len(labels) == len(rows) and labels["request_id"].nunique() == len(rows) // 100
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))

    joined = served_data.join_feedback(
        served_log(paths, params, until=labels["request_id"].iloc[-1]),
        served_data.read_labels(labels_file, target), paths.feedback, target,
    )  # fmt: skip
    result = monitor.run(params, paths, model_version=str(trained["model_version"]))

    assert joined["joined"] == len(rows) and joined["unmatched"] == 0
    assert result["rows"] == len(rows)
    assert result["drift"]["drifted"]
    numeric = [f.name for f in model.spec.features if f.kind == "numeric"]
    assert set(result["drift"]["drifted_columns"]) & set(numeric)
    # Scored on what was served, exactly as the model scores those rows in process.
    expected = compute_metrics(
        model.spec, features.encode_target(rows, model.spec), model.raw(rows)
    )
    assert result["performance"]["metrics"] == pytest.approx(expected, rel=1e-9)
    # One drifted window is fewer than k: only failed labelled performance may ask to retrain.
    assert result["decision"]["retrain"] == result["performance"]["failed"]
    saved = json.loads(Path(result["json"]).read_text())
    assert saved["window"] == result["window"]
    # What `make retrain REASON=drift` and `make challenge` take from this window.
    assert saved["monitor_run_id"] == result["monitor_run_id"]
    assert saved["decision"]["retrain"] == result["decision"]["retrain"]
    kept = pd.read_parquet(paths.labelled_window)
    names = model.spec.names
    assert smoke.to_records(kept, names) == smoke.to_records(rows, names)
    assert kept[target].tolist() == rows[target].tolist()
    for plot in result["plots"]:
        assert Path(plot).stat().st_size > 0
    assert "distributions.png" in Path(result["html"]).read_text()
    assert f"### Monitoring: window {result['window']}" in summary.read_text()
    (run,) = mlflow.search_runs(
        experiment_names=[monitor.EXPERIMENT],
        filter_string=f"tags.window_id = '{result['window']}'",
        output_format="list",
    )
    assert run.info.run_id == result["monitor_run_id"]
    assert run.data.tags["model_version"] == str(trained["model_version"])
    assert run.data.tags["drifted"] == "true"
    assert run.data.metrics["drifted_share"] == result["drift"]["drifted_share"]


def test_each_local_environment_and_candidate_logs_its_own_traffic_which_monitor_reads(
    paths, params, bento, model, trained, splits, tmp_path, monkeypatch
):
    monkeypatch.setenv("MONITORING_PATH", str(tmp_path))  # this test's traffic only
    held_out = splits[1]
    names = ["test", "preprod", local.candidate("test")]
    servers = {}
    try:
        ports = set()
        while len(ports) < len(names):
            ports.add(serving.free_port())
        # Side by side: each start waits seconds for its own `bentoml serve` to be ready.
        with ThreadPoolExecutor(len(names)) as starting:
            started = {
                name: starting.submit(
                    serving.start, paths, bento["tag"], port, name, record_as=name
                )
                for name, port in zip(names, ports, strict=True)
            }
        servers = {n: f.result() for n, f in started.items() if f.exception() is None}
        for future in started.values():
            future.result()  # a start that failed, once the others are kept to be stopped
        for size, name in enumerate(names, start=1):
            records = smoke.to_records(held_out.head(10 * size), model.spec.names)
            assert post(servers[name].url, records, f"it-{name}").status_code == 200
        logs = {
            name: served_log(paths, params, f"it-{name}", monitor.log_folder(params, paths, name))
            for name in ("test", "preprod")
        }
        candidate = served_log(paths, params, "it-test.candidate", tmp_path / "test.candidate")
    finally:
        for name, server in servers.items():
            serving.stop(server)
            serving.clear_state(paths, name)

    assert monitor.log_folder(params, paths, "preprod") == tmp_path / "preprod"
    assert set(logs["test"]["request_id"]) == {"it-test"} and len(logs["test"]) == 10
    assert set(logs["preprod"]["request_id"]) == {"it-preprod"} and len(logs["preprod"]) == 20
    assert set(candidate["request_id"]) == {"it-test.candidate"}
    version = str(trained["model_version"])
    result = monitor.run(params, paths, model_version=version, environment="preprod")
    assert result["rows"] == 20
