"""The committed suite passes on good data and names the column and expectation on bad data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package }} import data_docs, validation
from {{ cookiecutter.package }}.config import Paths, load_params

pytestmark = pytest.mark.data


@pytest.fixture
def feature(raw_data, params) -> str:
    """A numeric feature column of whichever dataset this project was generated with."""
    return next(column for column in raw_data.columns if column != params.data.target)


@pytest.fixture
def check(params, paths, tmp_path):
    """Validate a frame as `make validate --data file.parquet` would; return outcome and report."""

    def run(frame: pd.DataFrame) -> tuple[dict, dict]:
        data_file = tmp_path / "candidate.parquet"
        frame.to_parquet(data_file, index=False)
        outcome = validation.validate(params, paths, data_file)
        report = json.loads((paths.validation_reports / "result.json").read_text())
        return outcome, report

    return run


def failing(report: dict, expectation: str, column: str | None) -> list[dict]:
    return [
        record
        for record in report["results"]
        if not record["success"]
        and record["expectation"] == expectation
        and record["column"] == column
    ]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The module's validations compile Data Docs templates into a cache of their own."""
    folder = tmp_path_factory.mktemp("compiled-templates")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_docs, "_COMPILED", data_docs.TemplateCache(str(folder)))
        yield folder


@pytest.fixture(scope="module")
def default_run(params, paths, raw_data, compiled) -> tuple[dict, dict]:
    """`make validate` on the materialised default data: the outcome and result.json."""
    outcome = validation.validate(params, paths, None)
    return outcome, json.loads((paths.validation_reports / "result.json").read_text())


def test_the_committed_suite_passes_on_the_default_data(default_run):
    outcome, report = default_run

    assert outcome["success"], validation.format_failures(outcome)
    assert report["success"] is True
    assert report["statistics"]["unsuccessful_expectations"] == 0
    assert len(report["results"]) == report["statistics"]["evaluated_expectations"] > 0


def test_data_docs_are_written_and_show_the_run(default_run, paths):
    outcome, _ = default_run

    index = paths.validation_reports / "docs" / "index.html"
    assert outcome["docs_index"] == str(index)
    assert "validations/raw/" in index.read_text()
    assert list((paths.validation_reports / "docs" / "validations").rglob("*.html"))


def test_data_docs_templates_compile_once_then_load_from_the_cache(
    default_run, params, paths, compiled
):
    written = {file.name: file.stat().st_mtime_ns for file in compiled.iterdir()}
    assert written  # GX's page templates, compiled by data_docs' views

    validation.validate(params, paths, None)

    # Each template was found in the cache: none compiled, none written again.
    assert {file.name: file.stat().st_mtime_ns for file in compiled.iterdir()} == written
    assert "validations/raw/" in (paths.validation_reports / "docs" / "index.html").read_text()


def test_a_template_cache_that_cannot_be_written_fails_no_validation(
    params, paths, raw_data, tmp_path, monkeypatch
):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    monkeypatch.setattr(data_docs, "_COMPILED", data_docs.TemplateCache(str(not_a_folder)))

    outcome = validation.validate(params, paths, None)

    assert outcome["success"], validation.format_failures(outcome)
    assert "validations/raw/" in (paths.validation_reports / "docs" / "index.html").read_text()


def test_the_table_lists_every_expectation_with_its_status(default_run):
    outcome, _ = default_run

    table = validation.format_table(outcome)
    assert table.splitlines()[0].split() == ["status", "column", "expectation", "observed"]
    assert table.count("\nok ") == outcome["statistics"]["evaluated_expectations"]
    assert validation.format_failures(outcome) == "data validation passed"


def test_a_dropped_column_is_named(check, raw_data, feature):
    outcome, report = check(raw_data.drop(columns=[feature]))

    assert outcome["success"] is False
    assert failing(report, "expect_column_to_exist", feature)
    (mismatch,) = failing(report, "expect_table_columns_to_match_set", None)
    assert mismatch["missing_columns"] == [feature]
    message = validation.format_failures(outcome)
    assert f"column '{feature}': expect_column_to_exist failed (column is missing)" in message
    assert f"expect_table_columns_to_match_set failed (missing columns ['{feature}']" in message


def test_injected_nulls_are_named(check, raw_data, feature):
    bad = raw_data.copy()
    bad.loc[: len(bad) // 5, feature] = np.nan

    outcome, report = check(bad)

    assert outcome["success"] is False
    (record,) = failing(report, "expect_column_values_to_not_be_null", feature)
    assert record["unexpected_count"] == len(bad) // 5 + 1
    message = validation.format_failures(outcome)
    assert f"column '{feature}': expect_column_values_to_not_be_null failed" in message


def test_out_of_range_values_are_named_with_an_example(check, raw_data, feature):
    bad = raw_data.copy()
    bad.loc[[0, 1, 2], feature] = 1e6

    outcome, report = check(bad)

    (record,) = failing(report, "expect_column_values_to_be_between", feature)
    assert record["unexpected_count"] == 3
    assert record["unexpected_examples"] == [1e6]
    assert (
        f"column '{feature}': expect_column_values_to_be_between failed "
        "(3 unexpected values, e.g. 1e+06)" in validation.format_failures(outcome)
    )


def test_far_fewer_rows_than_the_bound_fail_the_row_count(check, raw_data):
    outcome, report = check(raw_data.head(10))

    (record,) = failing(report, "expect_table_row_count_to_be_between", None)
    assert record["observed_value"] == 10
    assert "table: expect_table_row_count_to_be_between failed (10)" in (
        validation.format_failures(outcome)
    )


def test_a_missing_suite_says_to_run_make_profile(params, tmp_path):
    with pytest.raises(FileNotFoundError, match="make profile"):
        validation.validate(params, Paths(tmp_path), None)


def test_an_unseen_category_is_named_in_a_profiled_suite(tmp_path):
    """The default datasets have no categorical column, so profile a small project that has."""
    from {{ cookiecutter.package }} import data

    rng = np.random.default_rng(0)
    rows = 200
    (tmp_path / "params.yaml").write_text(
        "task: binary\ndata:\n  source: data.csv\n  categorical: [plan]\n"
    )
    pd.DataFrame(
        {
            "Plan": rng.choice(["basic", "premium"], rows),
            "Tenure": rng.integers(1, 60, rows),
            "target": rng.integers(0, 2, rows),
        }
    ).to_csv(tmp_path / "data.csv", index=False)
    paths, params = Paths(tmp_path), load_params(tmp_path / "params.yaml")
    data.materialise(params, paths)
    good = data.load_raw(paths)
    validation.profile(params, paths, paths.suite)
    assert validation.validate(params, paths, None)["success"]

    bad = good.assign(plan=good["plan"].astype(str))
    bad.loc[[3, 4], "plan"] = "platinum"
    bad_file = tmp_path / "bad.csv"
    bad.to_csv(bad_file, index=False)
    outcome = validation.validate(params, paths, bad_file)

    assert outcome["success"] is False
    assert (
        "column 'plan': expect_column_values_to_be_in_set failed (2 unexpected values, "
        "e.g. platinum)" in validation.format_failures(outcome)
    )
    report = json.loads((paths.validation_reports / "result.json").read_text())
    assert failing(report, "expect_column_values_to_be_in_set", "plan")
