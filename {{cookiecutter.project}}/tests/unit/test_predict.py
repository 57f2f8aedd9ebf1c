"""Batch prediction's pure parts: which expectations apply to a batch, the output columns."""

from __future__ import annotations

import numpy as np
import pytest

from {{ cookiecutter.package }}.model import outputs_from_raw
from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec
from {{ cookiecutter.package }}.predict import feature_suite, prediction_columns
from {{ cookiecutter.package }}.tables import file_format

pytestmark = pytest.mark.unit


def spec(task: str = "binary", classes: list | None = None) -> FeatureSpec:
    return FeatureSpec(
        task=task,
        target="target",
        features=[Feature(name="age", kind="numeric"), Feature(name="income", kind="numeric")],
        classes=classes if task != "regression" else None,
        id_columns=["customer_id"],
    )


def expectation(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs}


SUITE = {
    "name": "raw",
    "meta": {"profiled_rows": 500},
    "expectations": [
        expectation(
            "expect_table_columns_to_match_set",
            column_set=["age", "customer_id", "income", "target"],
            exact_match=True,
        ),
        expectation("expect_table_row_count_to_be_between", min_value=250, max_value=None),
        expectation("expect_column_to_exist", column="age"),
        expectation("expect_column_values_to_be_between", column="age", min_value=0, max_value=99),
        expectation("expect_column_values_to_be_between", column="customer_id", min_value=1),
        expectation("expect_column_values_to_be_in_set", column="target", value_set=[0, 1]),
        expectation(
            "expect_column_pair_values_a_to_be_greater_than_b", column_A="income", column_B="age"
        ),
        expectation(
            "expect_column_pair_values_a_to_be_greater_than_b", column_A="income", column_B="target"
        ),
        expectation("expect_compound_columns_to_be_unique", column_list=["age", "customer_id"]),
    ],
}


def test_a_batch_is_held_to_the_feature_columns_expectations_only():
    narrowed = feature_suite(SUITE, spec())

    kept = [(entry["type"], entry["kwargs"]) for entry in narrowed["expectations"]]
    assert kept == [
        (
            "expect_table_columns_to_match_set",
            {"column_set": ["age", "income"], "exact_match": False},
        ),
        ("expect_column_to_exist", {"column": "age"}),
        ("expect_column_values_to_be_between", {"column": "age", "min_value": 0, "max_value": 99}),
        (
            "expect_column_pair_values_a_to_be_greater_than_b",
            {"column_A": "income", "column_B": "age"},
        ),
    ]


def test_narrowing_keeps_the_suite_name_and_notes_why_in_its_meta():
    narrowed = feature_suite(SUITE, spec())

    assert narrowed["name"] == "raw"
    assert narrowed["meta"]["profiled_rows"] == 500
    assert narrowed["meta"]["narrowed_to"] == "the model's feature columns"
    assert len(SUITE["expectations"]) == 9  # the committed suite itself is untouched


def test_binary_output_is_the_label_and_one_probability_per_class():
    columns = prediction_columns(np.array([0.2, 0.9]), spec("binary", ["no", "yes"]))

    assert list(columns) == ["prediction", "probability_no", "probability_yes"]
    assert columns["prediction"].tolist() == ["no", "yes"]
    np.testing.assert_allclose(columns["probability_no"], [0.8, 0.1])
    np.testing.assert_allclose(columns["probability_yes"], [0.2, 0.9])


def test_multiclass_labels_follow_the_most_probable_class():
    raw = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])

    columns = prediction_columns(raw, spec("multiclass", [3, 5, 8]))

    assert list(columns) == ["prediction", "probability_3", "probability_5", "probability_8"]
    assert columns["prediction"].tolist() == [5, 3]
    np.testing.assert_array_equal(columns["probability_8"], [0.2, 0.3])


def test_class_labels_become_clean_column_names():
    columns = prediction_columns(np.array([0.5]), spec("binary", ["Low risk", "High-risk!"]))

    assert list(columns)[1:] == ["probability_low_risk", "probability_high_risk"]


def test_regression_output_is_the_value_alone():
    columns = prediction_columns(np.array([1.5, -2.0]), spec("regression"))

    assert list(columns) == ["prediction"]
    assert columns["prediction"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("batch.csv", "csv"),
        ("batch.parquet", "parquet"),
        ("batch.pq", "parquet"),
        ("BATCH.CSV", "csv"),
        ("BATCH.PARQUET", "parquet"),
    ],
)
def test_the_format_follows_the_suffix(tmp_path, name, expected):
    assert file_format(tmp_path / name, "INPUT") == expected


def test_an_unknown_suffix_is_named_with_the_known_ones(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"OUTPUT: out\.txt has unknown format '\.txt'; use one of \.csv, \.parquet, \.pq",
    ):
        file_format(tmp_path / "out.txt", "OUTPUT")


@pytest.mark.parametrize(
    ("raw", "task", "classes"),
    [
        (np.array([0.2, 0.9, 0.5]), "binary", ["no", "yes"]),
        (np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]), "multiclass", [3, 5, 8]),
    ],
)
def test_a_batch_and_the_service_read_the_same_labels_and_probabilities(raw, task, classes):
    columns = prediction_columns(raw, spec(task, classes))
    served = outputs_from_raw(raw, spec(task, classes))

    assert columns["prediction"].tolist() == served["predictions"]
    probabilities = [columns[f"probability_{label}"] for label in classes]
    assert np.column_stack(probabilities).tolist() == served["probabilities"]
