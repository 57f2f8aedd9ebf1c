"""`make predict`: a validated batch scored by the packaged model; a bad batch refused."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }} import cli, features, predict
from {{ cookiecutter.package }}.config import Paths

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def batch(params, raw_data) -> pd.DataFrame:
    """Held-out rows without their label, shuffled, with an ID column the model never sees."""
    rows = features.split(raw_data, params)[1].drop(columns=[params.data.target])
    rows = rows.sample(frac=1, random_state=7).reset_index(drop=True)
    rows.insert(0, "customer_id", [f"customer-{number:04d}" for number in range(len(rows))])
    return rows


@pytest.fixture(scope="module")
def scored(params, paths, bento, batch, tmp_path_factory) -> tuple[dict, pd.DataFrame]:
    """`make predict INPUT=batch.csv OUTPUT=out/predictions.csv`: the record and the output."""
    folder = tmp_path_factory.mktemp("batch")
    batch.to_csv(folder / "batch.csv", index=False)
    output = folder / "out" / "predictions.csv"
    record = predict.predict_file(params, paths, folder / "batch.csv", output)
    return record, pd.read_csv(output)


@pytest.fixture
def feature(model) -> str:
    return model.spec.names[0]


def probability_columns(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column.startswith(predict.PROBABILITY)]


def test_the_batch_is_scored_by_the_model_in_the_latest_bento(scored, bento, batch, paths):
    record, output = scored

    assert record["bento"] == bento["tag"]
    assert record["model_tag"] == bento["model_tag"]
    assert record["rows"] == len(output) == len(batch)
    assert json.loads((paths.predict_reports / "prediction.json").read_text()) == record


def test_predictions_equal_the_in_process_model_on_the_same_rows(scored, model, batch):
    _, output = scored
    expected = model.predict(batch)

    if model.spec.task == "regression":
        assert probability_columns(output) == []
        np.testing.assert_allclose(
            output["prediction"], expected["predictions"], rtol=0, atol=1e-12
        )
    else:
        assert output["prediction"].tolist() == expected["predictions"]
        assert probability_columns(output) == [
            f"probability_{label}" for label in model.spec.classes
        ]
        np.testing.assert_allclose(
            output[probability_columns(output)].to_numpy(),
            expected["probabilities"],
            rtol=0,
            atol=1e-12,
        )


def test_row_order_and_id_columns_are_kept_and_features_are_not_copied(scored, batch, model):
    _, output = scored

    assert output["customer_id"].tolist() == batch["customer_id"].tolist()
    assert output.columns[:2].tolist() == ["customer_id", "prediction"]
    assert not set(model.spec.names) & set(output.columns)


@pytest.mark.parametrize(("source", "target"), [("parquet", "parquet"), ("parquet", "csv")])
def test_parquet_batches_round_trip_to_the_same_predictions(
    params, paths, bento, batch, scored, tmp_path, source, target
):
    source_file, output = tmp_path / f"batch.{source}", tmp_path / f"predictions.{target}"
    batch.to_parquet(source_file, index=False)

    predict.predict_file(params, paths, source_file, output)

    written = pd.read_parquet(output) if target == "parquet" else pd.read_csv(output)
    pd.testing.assert_frame_equal(written, scored[1], check_dtype=False, rtol=0, atol=1e-12)


def test_a_labelled_batch_passes_validation_and_keeps_its_label(
    params, paths, bento, raw_data, model, tmp_path
):
    """The suite's checks on the target apply to training data, not to a batch to score."""
    labelled = raw_data.head(50)
    labelled.to_parquet(tmp_path / "labelled.parquet", index=False)

    predict.predict_file(params, paths, tmp_path / "labelled.parquet", tmp_path / "out.parquet")

    output = pd.read_parquet(tmp_path / "out.parquet")
    assert output[params.data.target].tolist() == labelled[params.data.target].tolist()
    assert len(output) == 50 < validation_minimum_rows(paths)


def validation_minimum_rows(paths: Paths) -> int:
    """The committed suite's row-count minimum: a batch may be far smaller."""
    suite = json.loads(paths.suite.read_text())
    (bound,) = [
        entry["kwargs"]["min_value"]
        for entry in suite["expectations"]
        if entry["type"] == "expect_table_row_count_to_be_between"
    ]
    return bound


def refused(params, paths, frame: pd.DataFrame, folder, output_name: str):
    """Score `frame` from Parquet; return the refusal and the report it wrote."""
    frame.to_parquet(folder / "bad.parquet", index=False)
    with pytest.raises(predict.BatchRefused) as caught:
        predict.predict_file(params, paths, folder / "bad.parquet", folder / output_name)
    report = json.loads((paths.predict_reports / "validation" / "result.json").read_text())
    return caught.value, report


def failed(report: dict, expectation: str, column: str) -> list[dict]:
    return [
        record
        for record in report["results"]
        if not record["success"]
        and record["expectation"] == expectation
        and record["column"] == column
    ]


def test_a_batch_without_a_feature_is_refused_naming_it_and_nothing_is_written(
    params, paths, bento, batch, feature, tmp_path
):
    error, report = refused(params, paths, batch.drop(columns=[feature]), tmp_path, "out.csv")

    assert failed(report, "expect_column_to_exist", feature)
    assert f"column '{feature}': expect_column_to_exist failed (column is missing)" in str(error)
    assert str(error).splitlines()[0].startswith("batch refused by the expectation suite")
    assert str(paths.predict_reports / "validation" / "result.json") in str(error)
    assert (paths.predict_reports / "validation" / "docs" / "index.html").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.parquet"]


def test_an_out_of_range_value_is_refused_and_an_earlier_output_is_left_alone(
    params, paths, bento, batch, feature, tmp_path
):
    (tmp_path / "out.csv").write_text("an earlier run's output\n")
    bad = batch.copy()
    bad.loc[[2, 5], feature] = 1e6

    error, report = refused(params, paths, bad, tmp_path, "out.csv")

    (record,) = failed(report, "expect_column_values_to_be_between", feature)
    assert record["unexpected_count"] == 2
    assert f"column '{feature}': expect_column_values_to_be_between failed" in str(error)
    assert (tmp_path / "out.csv").read_text() == "an earlier run's output\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.parquet", "out.csv"]


def test_a_missing_input_file_is_named(params, paths, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"INPUT: .*nowhere\.csv does not exist"):
        predict.predict_file(params, paths, tmp_path / "nowhere.csv", tmp_path / "out.csv")


@pytest.mark.parametrize(
    ("source", "output", "message"),
    [
        ("batch.xlsx", "out.csv", r"INPUT: batch\.xlsx has unknown format '\.xlsx'"),
        ("batch.csv", "out.json", r"OUTPUT: out\.json has unknown format '\.json'"),
        ("batch.csv", "predictions", r"OUTPUT: predictions has unknown format '\(no suffix\)'"),
    ],
)
def test_an_unknown_format_is_named_before_anything_runs(
    params, paths, tmp_path, source, output, message
):
    (tmp_path / source).write_text("a,b\n1,2\n")

    with pytest.raises(ValueError, match=message):
        predict.predict_file(params, paths, tmp_path / source, tmp_path / output)
    assert not (tmp_path / output).exists()


def test_missing_feature_columns_are_all_named(model, batch):
    dropped = model.spec.names[:2]

    with pytest.raises(ValueError, match=rf"the batch lacks feature columns \{dropped!r}"):
        predict.predict_frame(model, batch.drop(columns=dropped))


def test_an_id_column_named_like_a_prediction_column_is_refused(model, batch):
    with pytest.raises(ValueError, match=r"columns \['prediction'\]"):
        predict.predict_frame(model, batch.assign(prediction=1))


def test_without_a_packaged_model_it_says_to_run_make_package(params, tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make package` first"):
        predict.packaged_model(Paths(tmp_path))


def test_a_bento_missing_from_the_store_is_named(paths, bento):
    with pytest.raises(FileNotFoundError, match="bento .*:nosuchversion is not in the BentoML"):
        predict.packaged_model(paths, bento["tag"].split(":")[0] + ":nosuchversion")


def test_the_command_reports_a_bad_input_in_one_line(paths, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["predict", "predict", "nowhere.csv", "out.csv"])
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SystemExit) as exit_:
        cli.main()

    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == "error: INPUT: nowhere.csv does not exist"


def test_traceback_1_shows_the_error_with_its_traceback(paths, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["predict", "predict", "nowhere.csv", "out.csv"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACEBACK", "1")

    with pytest.raises(FileNotFoundError, match="INPUT: nowhere.csv does not exist"):
        cli.main()
