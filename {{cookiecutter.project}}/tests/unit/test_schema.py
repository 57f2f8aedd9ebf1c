"""The request schema is derived from the FeatureSpec and names the field that is wrong."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package }} import schema
from {{ cookiecutter.package }}.model_card import Feature, FeatureSpec
from {{ cookiecutter.package }}.schema import record_model, request_model

pytestmark = pytest.mark.unit

SPEC = FeatureSpec(
    task="binary",
    target="churned",
    features=[
        Feature(name="tenure", kind="numeric"),
        Feature(name="plan", kind="categorical", categories=["basic", "premium"]),
        Feature(name="monthly_spend", kind="numeric", nullable=True),
        # A feature named like a BaseModel method must still be a plain field.
        Feature(name="copy", kind="numeric"),
    ],
    classes=[0, 1],
)
VALID = {"tenure": 12, "plan": "premium", "monthly_spend": 30.5, "copy": 1.0}


def error_locations(error: ValidationError) -> list[tuple]:
    return [tuple(detail["loc"]) for detail in error.errors()]


def test_a_valid_record_is_accepted_and_keeps_feature_names():
    record = record_model(SPEC).model_validate(VALID)

    assert record.model_dump(by_alias=True) == {**VALID, "tenure": 12.0}


def test_a_nullable_feature_may_be_missing_or_null():
    model = record_model(SPEC)
    without = {k: v for k, v in VALID.items() if k != "monthly_spend"}

    assert model.model_validate(without).model_dump(by_alias=True)["monthly_spend"] is None
    assert model.model_validate({**VALID, "monthly_spend": None}) is not None


@pytest.mark.parametrize(
    ("change", "field", "error_type"),
    [
        ({"plan": "gold"}, "plan", "literal_error"),
        ({"tenure": math.nan}, "tenure", "finite_number"),
        ({"tenure": math.inf}, "tenure", "finite_number"),
        ({"tenure": "12"}, "tenure", "float_type"),
        ({"tenure": True}, "tenure", "float_type"),
        ({"tenure": None}, "tenure", "float_type"),
        ({"discount": 0.1}, "discount", "extra_forbidden"),
    ],
    ids=["unseen-category", "nan", "inf", "string-number", "boolean", "null", "unknown-field"],
)
def test_a_bad_value_is_rejected_naming_the_field(change, field, error_type):
    with pytest.raises(ValidationError) as caught:
        record_model(SPEC).model_validate({**VALID, **change})

    assert [(d["loc"], d["type"]) for d in caught.value.errors()] == [((field,), error_type)]


def test_a_missing_required_feature_is_named():
    record = {k: v for k, v in VALID.items() if k != "plan"}

    with pytest.raises(ValidationError) as caught:
        record_model(SPEC).model_validate(record)

    assert error_locations(caught.value) == [("plan",)]


def test_the_positional_python_name_is_not_accepted_as_a_feature():
    with pytest.raises(ValidationError) as caught:
        record_model(SPEC).model_validate({**VALID, "f0": 1.0})

    assert error_locations(caught.value) == [("f0",)]


def test_a_request_holds_between_one_and_max_batch_size_records():
    request = request_model(SPEC, max_batch_size=2)

    assert len(request.model_validate({"records": [VALID, VALID]}).records) == 2
    for records in ([], [VALID] * 3):
        with pytest.raises(ValidationError) as caught:
            request.model_validate({"records": records})
        assert error_locations(caught.value) == [("records",)]


def test_errors_inside_a_request_point_at_the_record_and_field():
    request = request_model(SPEC, max_batch_size=10)

    with pytest.raises(ValidationError) as caught:
        # Python's json (and pydantic's parser) accept the non-standard NaN token.
        request.model_validate_json('{"records": [' + json.dumps(VALID) + ', {"tenure": NaN}]}')

    assert ("records", 1, "tenure") in error_locations(caught.value)
    assert ("records", 1, "plan") in error_locations(caught.value)


def test_unknown_top_level_fields_are_rejected():
    with pytest.raises(ValidationError) as caught:
        request_model(SPEC, 10).model_validate({"records": [VALID], "rows": []})

    assert error_locations(caught.value) == [("rows",)]


def test_a_categorical_feature_without_categories_is_a_clear_error():
    spec = SPEC.model_copy(update={"features": [Feature(name="plan", kind="categorical")]})

    with pytest.raises(ValueError, match="'plan' has no known categories"):
        record_model(spec)


def test_records_become_rows_in_training_column_order():
    request = request_model(SPEC, 10).model_validate({"records": [dict(reversed(VALID.items()))]})

    rows = schema.records_to_rows(request.records, SPEC)

    assert rows == [[12.0, "premium", 30.5, 1.0]]


@pytest.mark.parametrize(
    ("task", "answer"),
    [
        ("binary", {"predictions": [1], "probabilities": [[0.2, 0.8]]}),
        ("regression", {"predictions": [3.5]}),
    ],
)
def test_the_response_model_has_probabilities_for_classifiers_only(task, answer):
    spec = SPEC.model_copy(update={"task": task})

    response = schema.response_model(spec).model_validate(answer)

    assert json.loads(response.model_dump_json()) == answer
