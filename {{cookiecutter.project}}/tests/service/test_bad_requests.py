"""Malformed prediction requests get a 4xx naming what is wrong, never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest

from {{ cookiecutter.package }} import features, package

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def record(params, raw_data, model) -> dict:
    """One valid held-out record."""
    held_out = features.split(raw_data, params)[1]
    return package.to_records(held_out.head(1), model.spec.names)[0]


@pytest.fixture(scope="module")
def numeric(model) -> str:
    return next(f.name for f in model.spec.features if f.kind == "numeric")


def post(server: str, body: dict | bytes, content_type: str = "application/json"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    return httpx.post(f"{server}/predict", content=content, headers=headers, timeout=30)


def error_locations(response: httpx.Response) -> list[list]:
    return [detail["loc"] for detail in response.json()["detail"]]


def assert_still_serving(server: str, record: dict) -> None:
    response = post(server, {"records": [record]})
    assert response.status_code == 200, response.text


def test_a_missing_feature_is_named(server, record, numeric):
    incomplete = {k: v for k, v in record.items() if k != numeric}

    response = post(server, {"records": [record, incomplete]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 1, numeric]]
    assert_still_serving(server, record)


def test_an_unknown_field_is_named(server, record):
    response = post(server, {"records": [{**record, "shoe_size": 44}]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, "shoe_size"]]
    assert_still_serving(server, record)


def test_a_string_for_a_numeric_feature_is_named(server, record, numeric):
    response = post(server, {"records": [{**record, numeric: "twelve"}]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, numeric]]
    assert_still_serving(server, record)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_is_named(server, record, numeric, token):
    body = json.dumps({"records": [{**record, numeric: 0.0}]})
    body = body.replace(f'"{numeric}": 0.0', f'"{numeric}": {token}')

    response = post(server, body.encode())

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 0, numeric]]
    assert response.json()["detail"][0]["type"] == "finite_number"
    assert_still_serving(server, record)


def test_an_empty_records_list_is_rejected(server, record):
    response = post(server, {"records": []})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records"]]
    assert_still_serving(server, record)


def test_more_records_than_max_batch_size_are_rejected(server, record, params):
    response = post(server, {"records": [record] * (params.serving.max_batch_size + 1)})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records"]]
    assert_still_serving(server, record)


def test_exactly_max_batch_size_records_are_accepted(server, record, params):
    response = post(server, {"records": [record] * params.serving.max_batch_size})

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == params.serving.max_batch_size


@pytest.mark.parametrize(
    "body",
    [b"this is not json", b'{"records": [', b"", b"null", b"[]", b'{"records": {"a": 1}}'],
    ids=["text", "truncated", "empty", "null", "array", "records-not-a-list"],
)
def test_a_body_that_is_not_a_request_object_is_rejected(server, record, body):
    response = post(server, body)

    assert response.status_code == 400, response.text
    assert response.json()["detail"], response.text
    assert_still_serving(server, record)


def test_a_record_that_is_not_an_object_is_named(server, record):
    response = post(server, {"records": [record, 42]})

    assert response.status_code == 400, response.text
    assert error_locations(response) == [["records", 1]]


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain"]
)
def test_a_body_that_is_not_json_by_content_type_gets_415(server, record, content_type):
    response = post(server, {"records": [record]}, content_type=content_type)

    assert response.status_code == 415, response.text
    assert content_type in response.json()["error"]
    assert_still_serving(server, record)
