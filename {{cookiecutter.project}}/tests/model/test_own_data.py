"""Bring your own data: a CSV named in params.yaml, with a categorical column and gaps.

Runs the real data stage, suite profiling and validation (GX) and LightGBM on a small
synthetic CSV in a throwaway project root; MLflow is not needed for these checks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package }} import data, features, smoke, train, validation
from {{ cookiecutter.package }}.config import Params, Paths
from {{ cookiecutter.package }}.model import Model
from {{ cookiecutter.package }}.schema import records_to_rows, request_model

pytestmark = pytest.mark.model

ROWS = 400


def own_csv(path, seed: int = 0) -> None:
    """A binary target driven by a categorical column and a numeric one with gaps."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["Lyon", "Oslo", "Kyiv"], size=ROWS)
    income = rng.normal(50, 10, size=ROWS)
    income[rng.choice(ROWS, size=20, replace=False)] = np.nan
    churned = ((city == "Oslo") | (np.nan_to_num(income, nan=50) > 62)).astype(int)
    frame = pd.DataFrame({"Customer ID": range(ROWS), "City": city, "Income": income})
    frame["Churned"] = churned
    frame.to_csv(path, index=False)


@pytest.fixture
def own_project(tmp_path):
    own_csv(tmp_path / "customers.csv")
    params = Params.model_validate(
        {
            "task": "binary",
            "data": {
                "source": "customers.csv",
                "target": "churned",
                "categorical": ["city"],
                "id_columns": ["customer_id"],
            },
            "model": {"n_estimators": 50, "num_leaves": 7, "min_child_samples": 5, "n_jobs": 1},
        }
    )
    (tmp_path / "expectations").mkdir()
    return params, Paths(tmp_path)


def test_a_csv_with_a_categorical_column_and_gaps_trains_with_lightgbm_categories(own_project):
    params, paths = own_project
    data.materialise(params, paths)
    frame = data.load_raw(paths)
    spec = features.derive_spec(frame, params)
    assert [(f.name, f.kind, f.nullable) for f in spec.features] == [
        ("city", "categorical", False),
        ("income", "numeric", True),
    ]
    assert spec.features[0].categories == ["Kyiv", "Lyon", "Oslo"]

    train_df, test_df = features.split(frame, params)
    model = train.fit(params, train_df, spec)
    # LightGBM received the column as a pandas category, not as codes or text.
    assert model.booster_.pandas_categorical == [["Kyiv", "Lyon", "Oslo"]]
    predictions = model.booster_.predict(features.to_features(test_df, spec))
    labels = (predictions >= 0.5).astype(int)
    assert (labels == test_df["churned"].to_numpy()).mean() > 0.9


def test_a_profiled_suite_for_own_data_passes_and_allows_its_gaps(own_project):
    params, paths = own_project
    data.materialise(params, paths)
    validation.profile(params, paths, paths.suite)
    outcome = validation.validate(params, paths)
    assert outcome["success"], validation.format_failures(outcome)


def test_the_serving_path_predicts_like_the_frame_path_and_refuses_an_unseen_category(
    own_project,
):
    params, paths = own_project
    data.materialise(params, paths)
    frame = data.load_raw(paths)
    spec = features.derive_spec(frame, params)
    train_df, test_df = features.split(frame, params)
    served = Model(train.fit(params, train_df, spec).booster_, spec)
    request = request_model(spec, max_batch_size=len(test_df))
    records = smoke.to_records(test_df, spec.names)

    rows = records_to_rows(request.model_validate({"records": records}).records, spec)

    np.testing.assert_array_equal(
        served.predict_rows(rows)["probabilities"], served.predict(test_df)["probabilities"]
    )
    with pytest.raises(ValidationError) as caught:
        request.model_validate({"records": [{**records[0], "city": "Paris"}]})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("records", 0, "city"), "literal_error")
    ]


@pytest.fixture
def unlabelled_project(tmp_path):
    """A regression CSV whose target is missing in 7 rows."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"size": rng.normal(100, 20, ROWS), "rooms": rng.integers(1, 6, ROWS)})
    frame["price"] = 3 * frame["size"] + 10 * frame["rooms"] + rng.normal(0, 5, ROWS)
    frame.loc[rng.choice(ROWS, size=7, replace=False), "price"] = np.nan
    frame.to_csv(tmp_path / "houses.csv", index=False)
    (tmp_path / "expectations").mkdir()

    def project(unlabelled: str) -> tuple[Params, Paths]:
        settings = {"source": "houses.csv", "target": "price", "unlabelled": unlabelled}
        model = {"n_estimators": 20, "n_jobs": 1}
        params = Params.model_validate({"task": "regression", "data": settings, "model": model})
        return params, Paths(tmp_path)

    return project


def test_rows_without_a_label_are_refused_at_validate_naming_the_column_and_count(
    unlabelled_project,
):
    params, paths = unlabelled_project("refuse")
    record = data.materialise(params, paths)
    validation.profile(params, paths, paths.suite)

    outcome = validation.validate(params, paths)

    assert record["unlabelled"] == 7 and record["rows"] == ROWS
    assert not outcome["success"]
    failures = validation.format_failures(outcome).splitlines()[1:]
    assert len(failures) == 1, failures
    assert "price" in failures[0] and "expect_column_values_to_not_be_null" in failures[0]
    assert "7" in failures[0]
    with pytest.raises(ValueError, match=r"'price' has 7 rows without a label"):
        train.train(params, paths)


def test_rows_without_a_label_are_dropped_at_data_when_params_say_so(unlabelled_project):
    params, paths = unlabelled_project("drop")

    record = data.materialise(params, paths)
    validation.profile(params, paths, paths.suite)
    outcome = validation.validate(params, paths)

    assert record["unlabelled_dropped"] == 7 and record["rows"] == ROWS - 7
    assert data.load_raw(paths)["price"].notna().all()
    assert outcome["success"], validation.format_failures(outcome)
