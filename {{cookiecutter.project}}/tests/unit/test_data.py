"""The data stage's pure parts: column names, normalisation and the fingerprint."""

from __future__ import annotations

import pandas as pd
import pytest

from {{ cookiecutter.package }}.config import DataParams, Params
from {{ cookiecutter.package }}.data import clean_column_name, fingerprint, normalise, read_source

pytestmark = pytest.mark.unit


def make_params(**data) -> Params:
    return Params(task="binary", data=DataParams(source="data.csv", **data))


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("mean radius", "mean_radius"),
        ("OD280/OD315 of diluted wines", "od280_od315_of_diluted_wines"),
        ("  Monthly Spend ($) ", "monthly_spend"),
        ("already_clean", "already_clean"),
        ("2nd plan", "f_2nd_plan"),
        (7, "f_7"),
    ],
)
def test_column_names_become_snake_case_identifiers(raw, clean):
    assert clean_column_name(raw) == clean


def test_a_column_name_without_letters_or_digits_is_rejected():
    with pytest.raises(ValueError, match="'%%'"):
        clean_column_name("%%")


def test_the_fingerprint_is_the_same_for_equal_frames():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})

    assert fingerprint(frame) == fingerprint(frame.copy())


def test_the_fingerprint_changes_when_one_value_changes():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    changed = frame.copy()
    changed.loc[1, "a"] = 2.5

    assert fingerprint(frame) != fingerprint(changed)


def test_the_fingerprint_changes_when_a_dtype_changes():
    frame = pd.DataFrame({"a": [1, 2]})

    assert fingerprint(frame) != fingerprint(frame.astype("float64"))


def test_normalise_cleans_names_and_makes_categorical_columns_categories():
    frame = pd.DataFrame({"Plan Type": ["basic", "premium", None], "target": [0, 1, 0]})

    result = normalise(frame, make_params(categorical=["plan_type"]))

    assert list(result.columns) == ["plan_type", "target"]
    assert isinstance(result["plan_type"].dtype, pd.CategoricalDtype)
    assert sorted(result["plan_type"].cat.categories) == ["basic", "premium"]
    assert result["plan_type"].isna().sum() == 1


def test_normalise_names_a_missing_target_column():
    frame = pd.DataFrame({"feature": [1, 2]})

    with pytest.raises(ValueError, match="churned"):
        normalise(frame, make_params(target="churned"))


def test_normalise_rejects_columns_that_collide_after_cleaning():
    frame = pd.DataFrame({"a b": [1], "a-b": [2], "target": [0]})

    with pytest.raises(ValueError, match="collide"):
        normalise(frame, make_params())


@pytest.mark.parametrize(
    "name", ["data.csv", "DATA.CSV", "data.parquet", "DATA.PARQUET", "data.Pq"]
)
def test_a_source_file_is_read_by_its_suffix_in_any_case(tmp_path, name):
    frame = pd.DataFrame({"Spend": [1.5, 2.5], "target": [0, 1]})
    if name.lower().endswith(".csv"):
        frame.to_csv(tmp_path / name, index=False)
    else:
        frame.to_parquet(tmp_path / name, index=False)

    read = read_source(Params(task="binary", data=DataParams(source=name)), tmp_path)

    assert read.to_dict(orient="list") == {"spend": [1.5, 2.5], "target": [0, 1]}


def test_a_source_file_of_another_format_is_named_with_the_known_ones(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"")

    with pytest.raises(ValueError, match=r"data\.source: data\.xlsx has unknown format '\.xlsx'"):
        read_source(Params(task="binary", data=DataParams(source="data.xlsx")), tmp_path)
